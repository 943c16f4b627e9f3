"""``mindstream eval run`` on the real pipeline: a worse agent version fails the suite.

Memory, reasoning and tools run in process against real Kafka and FerretDB; the
model is scripted on the agent's instructions, so version 1 ("careful") answers
right and version 2 ("careless") answers wrong. The CLI itself runs (in a thread,
it has its own event loop) with the environment pointing at the test's topics and
database; the control plane then shows the trend per version.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from mindstream.cli.main import main
from shared.settings import KafkaSettings, MongoSettings
from tests.integration.reasoning_harness import agent, reasoning_stack
from tests.support.control_plane import running_control_plane

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

SCRIPT = {"rules": [
    {"name": "careful-answer", "match": {"system": "You are careful", "tool_result": "calculator"},
     "text": "17 × 23 = {{tool_result:calculator|result}}."},
    {"name": "careful-json", "match": {"system": "You are careful", "last_user": "as JSON"},
     "text": '{"answer": 391}'},
    {"name": "careful-ask", "match": {"system": "You are careful", "last_user": r"17 \* 23"},
     "tool_calls": [{"name": "calculator", "arguments": {"expression": "17 * 23"}}]},
    {"name": "careless", "match": {"system": "You are careless"}, "text": "About 400, roughly."},
    {"name": "greeting", "text": "Hello!"},
]}

CALC = """
id: calc
instructions: "{who} Use the calculator for arithmetic."
model: {{name: scripted}}
tools: [calculator]
"""

SUITE = r"""
suite: calc-basics
agent: calc
concurrency: 3
timeout_s: 30
settle_ms: 200
thresholds: {min_pass_rate: 0.9, max_p95_latency_ms: 20000, max_tokens: 100000}
cases:
  - id: product
    input: "What is 17 * 23?"
    checks:
      - contains: "391"
      - tool: calculator
        arguments: {expression: "17 \\* 23"}
  - id: json
    input: "Give 17 times 23 as JSON"
    checks:
      - json_schema: {type: object, required: [answer], properties: {answer: {type: integer}}}
  - id: after-a-greeting
    session: ["hello there"]
    input: "What is 17 * 23?"
    checks:
      - regex: "\\b391\\b"
      - rubric: "The product is right."
"""


async def _cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


async def test_eval_fails_a_worse_version_and_records_the_trend(
    topics: KafkaSettings, mongo_settings: MongoSettings, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    suite = tmp_path / "calc.yaml"
    suite.write_text(SUITE)
    for name, value in {"KAFKA_BOOTSTRAP_SERVERS": topics.bootstrap_servers,
                        "MINDSTREAM_TOPIC_PREFIX": topics.topic_prefix,
                        "MONGODB_URI": mongo_settings.uri.get_secret_value(),
                        "MINDSTREAM_DB": mongo_settings.database}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MINDSTREAM_EVAL_GRADER_MODEL", raising=False)
    good = agent(CALC.format(who="You are careful."), version=1)
    worse = agent(CALC.format(who="You are careless."), version=2)
    async with reasoning_stack(topics, mongo_settings, SCRIPT, [good, worse],
                               with_tools=True, with_memory=True):
        assert await _cli("eval", "run", str(suite), "--agent", "calc@1", "--quiet") == 0
        passed = capsys.readouterr().out
        assert "passed 3/3 (100%)" in passed and "PASS" in passed
        assert "rubric: no grader model configured" in passed  # skipped, and said so

        json_path = tmp_path / "report.json"
        code = await _cli("eval", "run", str(suite), "--agent", "calc@2", "--quiet",
                          "--json", str(json_path))
        failed = capsys.readouterr().out
    assert code == 1
    assert "failing cases (3):" in failed and "FAIL" in failed
    assert "✗ min_pass_rate: 0% passed (0/3), need 90%" in failed
    run_ids = re.findall(r"✗ (\S+)  run (\S+)", failed)
    assert {case for case, _ in run_ids} == {"product", "json", "after-a-greeting"}
    assert all(run_id.startswith("eval-") for _, run_id in run_ids)
    assert "tool calculator: not called (no tool was called)" in failed
    assert "the answer is not JSON" in failed
    report = json_path.read_text()
    assert '"ok": false' in report and '"agent": "calc@2"' in report

    async with running_control_plane(topics, mongo_settings) as cp:
        answer = await cp.http.get("/api/v1/evals", params={"agent": "calc"}, headers=cp.auth())
        assert answer.status_code == 200, answer.text
        body = answer.json()
        (trend,) = body["trend"]
        assert trend["suite"] == "calc-basics"
        assert [(p["version"], p["pass_rate"], p["cases"]) for p in trend["versions"]] == [
            (1, 1.0, 3), (2, 0.0, 3)]
        assert [(r["agent_version"], r["ok"]) for r in body["runs"]] == [(2, False), (1, True)]
        detail = await cp.http.get(f"/api/v1/evals/{body['runs'][0]['eval_id']}",
                                   headers=cp.auth())
        cases = {c["case"]: c for c in detail.json()["results"]}
        assert not cases["product"]["passed"] and cases["product"]["run_id"] in dict(run_ids).values()
        missing = await cp.http.get("/api/v1/evals/ev-nope", headers=cp.auth())
        assert missing.status_code == 404
