"""kill -9 in the middle of a run: a new process finishes it without repeating a model call."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from schemas.runs import RunStatus
from shared.settings import KafkaSettings, MongoSettings
from tests.integration.reasoning_harness import agent, reasoning_stack

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MINDSTREAM = ROOT / ".venv" / "bin" / "mindstream"

ASSISTANT = agent("""
id: assistant
instructions: You are the assistant.
model: {name: scripted}
tools: [calculator, current_time]
""")

SCRIPT = r"""
rules:
  - match: {tool_result: [calculator, current_time]}
    text: "Survived: {{tool_result:calculator}}"
  - match: {last_user: "compute (.+)"}
    tool_calls:
      - {name: calculator, arguments: {expression: "{{match:1}}"}}
      - {name: current_time, arguments: {}}
"""


def _spawn(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([str(MINDSTREAM), "serve", "reasoning"], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)


async def test_kill_9_while_awaiting_tools_then_a_new_process_completes_the_run(
    topics: KafkaSettings, mongo_settings: MongoSettings, mongo_db: Any, tmp_path: Path
) -> None:
    async with reasoning_stack(topics, mongo_settings, SCRIPT, [ASSISTANT],
                               with_reasoning=False) as rs:
        env = {
            **os.environ,
            "MINDSTREAM_TOPIC_PREFIX": topics.topic_prefix,
            "MINDSTREAM_DB": mongo_settings.database,
            "KAFKA_BOOTSTRAP_SERVERS": topics.bootstrap_servers,
            "MONGODB_URI": mongo_settings.uri.get_secret_value(),
            "MINDSTREAM_MODEL_BASE_URL": rs.model.base_url,
            "MINDSTREAM_REASONING_HTTP_PORT": "0",
            "MINDSTREAM_REASONING_CONSUMER_CONCURRENCY": "1",
            "MINDSTREAM_REASONING_TOOL_MODULES": json.dumps(
                ["services.tools.builtins.calculator", "services.tools.builtins.clock"]),
            "PYTHONUNBUFFERED": "1",
        }
        log = tmp_path / "reasoning.log"
        first = _spawn(env, log)
        second: subprocess.Popen[bytes] | None = None
        try:
            run_id = await rs.ask("assistant", "compute 3*14", session="s-crash")
            calls = await rs.calls.wait(lambda c: c.run_id == run_id, count=2, timeout=60)
            first.send_signal(signal.SIGKILL)
            assert await asyncio.to_thread(first.wait, 10) == -signal.SIGKILL
            doc = await mongo_db.runs.find_one({"_id": run_id})
            assert doc["status"] == "awaiting_tools"
            second = _spawn(env, log)
            for call in calls:
                await rs.answer(call, {"result": 42})
            done = await rs.finished(run_id, timeout=90)
        except BaseException:
            print(log.read_text(errors="replace")[-4000:], file=sys.stderr)
            raise
        finally:
            for proc in (first, second):
                if proc is not None and proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        await asyncio.to_thread(proc.wait, 15)
                    except subprocess.TimeoutExpired:
                        proc.kill()
        assert done.status is RunStatus.COMPLETED, done.error
        assert done.output == 'Survived: {"result": 42}'
        # Each finished step called the model exactly once, across both processes.
        bodies = [r["body"] for r in rs.model.requests if r["path"].endswith("/chat/completions")]
        first_step = [b for b in bodies if b["messages"][-1]["role"] == "user"]
        second_step = [b for b in bodies if b["messages"][-1]["role"] == "tool"]
        assert (len(first_step), len(second_step)) == (1, 1)
        ids_by_seq: dict[int, set[str]] = {}
        for envelope, event in rs.events.items:
            if event.run_id == run_id:
                ids_by_seq.setdefault(event.seq, set()).add(envelope.id)
        # A step re-published after the crash kept its ids: one id per seq, and no gaps.
        assert all(len(ids) == 1 for ids in ids_by_seq.values())
        assert sorted(ids_by_seq) == list(range(len(ids_by_seq)))
        kinds = {env.id: e.kind.value for env, e in rs.events.items if e.run_id == run_id}
        assert list(kinds.values()).count("model.completed") == 2  # duplicates share an id
