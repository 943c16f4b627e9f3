"""The reasoning service end to end on real Kafka, FerretDB and the scripted model over HTTP."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from schemas.runs import RunCommandKind, RunEventKind, RunStatus
from shared.settings import KafkaSettings, MongoSettings
from tests.integration.reasoning_harness import agent, reasoning_stack

pytestmark = pytest.mark.integration

ASSISTANT = agent("""
id: assistant
instructions: You are the assistant. Use tools when useful.
model: {name: scripted}
tools: [calculator, current_time]
""")

TOOLS_SCRIPT = r"""
rules:
  - match: {tool_result: [calculator, current_time]}
    text: "The answer is {{tool_result:calculator}} (time {{tool_result:current_time}})"
  - match: {last_user: "compute (.+)"}
    tool_calls:
      - {name: calculator, arguments: {expression: "{{match:1}}"}}
      - {name: current_time, arguments: {timezone: "UTC"}}
  - text: "Hello from the scripted model, this is a plain answer."
"""


async def test_two_parallel_tool_calls_complete_with_the_right_answer(
    topics: KafkaSettings, mongo_settings: MongoSettings, mongo_db: Any
) -> None:
    async with reasoning_stack(topics, mongo_settings, TOOLS_SCRIPT, [ASSISTANT],
                               with_tools=True) as rs:
        run_id = await rs.ask("assistant", "compute 6*7")
        done = await rs.finished(run_id)
        assert done.status is RunStatus.COMPLETED, done.error
        assert done.output is not None and "42" in done.output
        assert done.metrics.model_calls == 2 and done.metrics.tool_calls == 2
        calls = rs.calls.messages(lambda c: c.run_id == run_id)
        assert sorted(c.tool for c in calls) == ["calculator", "current_time"]
        kinds = rs.kinds(run_id)
        assert kinds[0] == "run.started" and kinds[-1] == "run.completed"
        assert kinds.count("tool.requested") == 2 and kinds.count("tool.completed") == 2
        assert kinds.count("model.completed") == 2
        events = sorted(rs.events.messages(lambda e: e.run_id == run_id), key=lambda e: e.seq)
        assert [e.seq for e in events] == list(range(len(events)))
        model_done = [e for e in events if e.kind is RunEventKind.MODEL_COMPLETED]
        assert model_done[0].usage is not None and "latency_ms" in model_done[0].data
        targets = {run_id, *[c.call_id for c in calls]}
        audits = await rs.audit.wait(
            lambda a: a.target.id in targets and a.actor.id == "reasoning", count=4)
        assert {a.action for a in audits} == {"run.started", "tool.requested", "run.completed"}
    doc = await mongo_db.runs.find_one({"_id": run_id})  # the service has stopped: all settled
    assert doc["status"] == "completed" and doc["outbox"] == []


CAREFUL = agent("""
id: careful
instructions: You are careful. Every calculation needs approval.
model: {name: scripted}
tools: [calculator]
require_approval: [calculator]
""")

APPROVAL_SCRIPT = r"""
rules:
  - match: {tool_result: calculator}
    text: "Approved result: {{tool_result:calculator}}"
  - match: {last_user: "compute (.+)"}
    tool_calls: [{name: calculator, arguments: {expression: "{{match:1}}"}}]
"""


async def test_approval_waits_then_completes_after_approve_and_fails_after_reject(
    topics: KafkaSettings, mongo_settings: MongoSettings, mongo_db: Any
) -> None:
    async with reasoning_stack(topics, mongo_settings, APPROVAL_SCRIPT, [CAREFUL],
                               with_tools=True) as rs:
        yes = await rs.ask("careful", "compute 2**10", session="s-yes")
        no = await rs.ask("careful", "compute 1/0", session="s-no")
        for run_id, session, kind in [(yes, "s-yes", RunCommandKind.APPROVE),
                                      (no, "s-no", RunCommandKind.REJECT)]:
            waiting = (await rs.events.wait(
                lambda e, r=run_id: e.run_id == r and e.kind.value == "run.awaiting_approval"))[0]
            assert not rs.calls.messages(lambda c, r=run_id: c.run_id == r)  # nothing ran yet
            doc = await mongo_db.runs.find_one({"_id": run_id})
            assert doc["status"] == "awaiting_approval"
            await rs.command(run_id, session, kind, call_id=waiting.call_id, reason="checked")
        approved = await rs.finished(yes)
        assert approved.status is RunStatus.COMPLETED and "1024" in (approved.output or "")
        call = (await rs.calls.wait(lambda c: c.run_id == yes))[0]
        assert call.approved_by is not None and call.approved_by.id == "op-1"
        rejected = await rs.finished(no)
        assert rejected.status is RunStatus.FAILED
        assert rejected.error is not None and "rejected by user:op-1" in rejected.error
        assert not rs.calls.messages(lambda c: c.run_id == no)
        decisions = await rs.audit.wait(
            lambda a: a.action in ("tool.approved", "tool.rejected"), count=2)
        assert {a.actor.id for a in decisions} == {"op-1"}


async def test_cancel_mid_run_ignores_late_results(
    topics: KafkaSettings, mongo_settings: MongoSettings
) -> None:
    async with reasoning_stack(topics, mongo_settings, TOOLS_SCRIPT, [ASSISTANT]) as rs:
        doomed = await rs.ask("assistant", "compute 1+1", session="s-c")
        witness = await rs.ask("assistant", "compute 2+2", session="s-c")
        calls = await rs.calls.wait(lambda c: c.run_id in (doomed, witness), count=4)
        await rs.command(doomed, "s-c", RunCommandKind.CANCEL, reason="user left")
        cancelled = await rs.finished(doomed)
        assert cancelled.status is RunStatus.CANCELLED
        assert cancelled.error is not None and "user left" in cancelled.error
        requests_before = len(rs.model.requests)
        # Results of the cancelled run first, then the witness's, on the same partition:
        # once the witness completes, the late results have been handled (and ignored).
        for c in sorted(calls, key=lambda c: c.run_id != doomed):
            await rs.answer(c, {"result": 7})
        assert (await rs.finished(witness)).status is RunStatus.COMPLETED
        assert len(rs.model.requests) == requests_before + 1  # only the witness's answer
        assert rs.kinds(doomed)[-1] == "run.cancelled"
        assert "tool.completed" not in rs.kinds(doomed)


FLAKY = agent("""
id: flaky
instructions: You depend on a sick endpoint.
model: {name: scripted}
limits: {deadline_seconds: 20}
""")


async def test_model_endpoint_500s_fail_the_run_clearly_and_open_the_breaker(
    topics: KafkaSettings, mongo_settings: MongoSettings
) -> None:
    script = [{"status": 500, "message": "upstream exploded"}]
    async with reasoning_stack(topics, mongo_settings, script, [FLAKY], model_max_attempts=2,
                               model_breaker_failure_threshold=2) as rs:
        first = await rs.ask("flaky", "hello")
        failed = await rs.finished(first)
        assert failed.status is RunStatus.FAILED
        assert failed.error is not None and "unavailable after 2 attempt(s)" in failed.error
        assert "upstream exploded" in failed.error
        assert failed.metrics.duration_ms < 20_000
        assert rs.reasoning is not None
        assert rs.reasoning.model.breaker().state.value == "open"
        calls_so_far = len(rs.model.requests)
        second = await rs.ask("flaky", "hello again")
        fast = await rs.finished(second)
        assert fast.error is not None and "circuit breaker open" in fast.error
        assert fast.metrics.duration_ms < 2_000
        assert len(rs.model.requests) == calls_so_far  # failed fast: no call made
        event = (await rs.events.wait(
            lambda e: e.run_id == second and e.kind.value == "run.failed"))[0]
        assert event.reason == fast.error


async def test_a_new_agent_version_takes_effect_without_restart_and_pins_still_work(
    topics: KafkaSettings, mongo_settings: MongoSettings, mongo_db: Any
) -> None:
    script = [{"match": {"system": "Version two"}, "text": "v2 speaking"}, {"text": "v1 speaking"}]
    async with reasoning_stack(topics, mongo_settings, script, [agent(
            "{id: evolving, instructions: Version one., model: {name: scripted}}")]) as rs:
        assert rs.reasoning is not None
        await rs.publish_agents(agent(
            "{id: evolving, instructions: Version two., model: {name: scripted}}", version=2))
        registry = rs.reasoning.agents.registry
        arrived = asyncio.Event()
        registry.on_change(lambda d: arrived.set() if d.version == 2 else None)
        if registry.get("evolving@2") is None:  # the registry follows the topic
            await asyncio.wait_for(arrived.wait(), 15)
        latest = await rs.finished(await rs.ask("evolving", "hi"))
        pinned = await rs.finished(await rs.ask("evolving@1", "hi"))
        assert (latest.agent_id, latest.output) == ("evolving@2", "v2 speaking")
        assert (pinned.agent_id, pinned.output) == ("evolving@1", "v1 speaking")
    stored = await mongo_db.agent_versions.find({}, {"_id": 1}).to_list()
    assert {d["_id"] for d in stored} == {"evolving@1", "evolving@2"}
