"""kill -9 of the workflows process mid-run: a new process finishes it, each step run once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from schemas.runs import RunStatus
from shared.settings import KafkaSettings, MongoSettings
from tests.integration.reasoning_harness import agent
from tests.integration.workflows_harness import workflow, workflows_stack

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MINDSTREAM = ROOT / ".venv" / "bin" / "mindstream"

AGENTS = [agent(f"id: {name}\ninstructions: You are the {name} agent.\nmodel: {{name: scripted}}")
          for name in ("researcher", "writer", "reviewer")]

# The writer is slow, so the process can be killed while its step is in flight.
SCRIPT = r"""
rules:
  - match: {system: "the researcher agent"}
    text: "FACTS({{last_user}})"
  - match: {system: "the writer agent"}
    delay_ms: 1500
    text: "DRAFT[{{last_user}}]"
  - match: {system: "the reviewer agent"}
    text: "REVIEWED {{last_user}}"
"""

ARTICLE = workflow("""
id: article
steps:
  - {id: research, type: agent, agent: researcher, next: write}
  - {id: write, type: agent, agent: writer, input: "{{steps.research.output}}", next: review}
  - {id: review, type: agent, agent: reviewer, input: "{{steps.write.output}}"}
""")


def _spawn(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([str(MINDSTREAM), "serve", "workflows"], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)


async def test_kill_9_mid_workflow_then_a_new_process_completes_it(
    topics: KafkaSettings, mongo_settings: MongoSettings, mongo_db: Any, tmp_path: Path
) -> None:
    async with workflows_stack(topics, mongo_settings, SCRIPT, AGENTS, [ARTICLE],
                               in_process=False) as ws:
        env = {
            **os.environ,
            "MINDSTREAM_TOPIC_PREFIX": topics.topic_prefix,
            "MINDSTREAM_DB": mongo_settings.database,
            "KAFKA_BOOTSTRAP_SERVERS": topics.bootstrap_servers,
            "MONGODB_URI": mongo_settings.uri.get_secret_value(),
            "MINDSTREAM_WORKFLOWS_HTTP_PORT": "0",
            "MINDSTREAM_WORKFLOWS_CONSUMER_CONCURRENCY": "1",
            "MINDSTREAM_WORKFLOWS_OUTBOX_REDRIVE_AFTER_S": "1",
            "PYTHONUNBUFFERED": "1",
        }
        log = tmp_path / "workflows.log"
        first = _spawn(env, log)
        second: subprocess.Popen[bytes] | None = None
        try:
            run_id = await ws.start("article", "tides")
            # The writer's run is requested: the workflow is mid-flight. Kill it hard.
            await ws.rs.requested.wait(
                lambda r: r.metadata.get("workflow_run_id") == run_id
                and r.metadata.get("workflow_step") == "write", timeout=90)
            first.send_signal(signal.SIGKILL)
            assert await asyncio.to_thread(first.wait, 10) == -signal.SIGKILL
            doc = await mongo_db.workflow_runs.find_one({"_id": run_id})
            assert doc["status"] == "running"
            # The writer finishes while no workflows process is alive; a new one carries on.
            write_run = ws.step_runs(run_id)["write"]
            assert (await ws.rs.finished(write_run, timeout=60)).status is RunStatus.COMPLETED
            second = _spawn(env, log)
            done = await ws.finished(run_id, timeout=120)
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
        assert done.kind.value == "workflow.completed", done.reason
        assert done.output == "REVIEWED DRAFT[FACTS(tides)]"
        # Each step was run once: one run id per step, one model call per run.
        requests = ws.rs.requested.messages(lambda r: r.metadata.get("workflow_run_id") == run_id)
        by_step: dict[str, set[str]] = {}
        for r in requests:
            by_step.setdefault(r.metadata["workflow_step"], set()).add(r.run_id)
        assert {k: len(v) for k, v in by_step.items()} == {"research": 1, "write": 1, "review": 1}
        calls = [r for r in ws.rs.model.requests if r["path"].endswith("/chat/completions")]
        assert len(calls) == 3
        # Events replayed after the crash kept their ids: one id per seq, no gaps.
        ids_by_seq: dict[int, set[str]] = {}
        for envelope, event in ws.events.items:
            if event.workflow_run_id == run_id:
                ids_by_seq.setdefault(event.seq, set()).add(envelope.id)
        assert all(len(ids) == 1 for ids in ids_by_seq.values())
        assert sorted(ids_by_seq) == list(range(len(ids_by_seq)))
