"""Workflows through the real pipeline: memory, reasoning, tools and the scripted model."""

from __future__ import annotations

import json

import pytest

from schemas.runs import RunStatus
from schemas.workflows import WorkflowCommandKind
from shared.settings import KafkaSettings, MongoSettings
from tests.integration.reasoning_harness import agent
from tests.integration.workflows_harness import workflow, workflows_stack

pytestmark = pytest.mark.integration


def _agent(name: str, **extra: str) -> object:
    lines = "".join(f"\n{k}: {v}" for k, v in extra.items())
    return agent(f"id: {name}\ninstructions: You are the {name} agent.\nmodel: {{name: scripted}}"
                 + lines)


AGENTS = [_agent(n) for n in ("researcher", "writer", "reviewer", "analyst", "critic",
                              "historian", "editor", "classifier", "billing", "support",
                              "publisher")]
AGENTS.append(_agent("calc", tools="[calculator]"))

SCRIPT = r"""
rules:
  - match: {system: "the researcher agent"}
    text: "FACTS({{last_user}})"
  - match: {system: "the writer agent", last_user: "^Write (.*)$"}
    text: "DRAFT[{{match:1}}]"
  - match: {system: "the writer agent", last_user: "^Draft v(\\d+)"}
    text: "version {{match:1}}"
  - match: {system: "the reviewer agent", last_user: "version 1"}
    text: "needs work"
  - match: {system: "the reviewer agent", last_user: "version"}
    text: "APPROVED"
  - match: {system: "the reviewer agent"}
    text: "REVIEWED {{last_user}}"
  - match: {system: "the analyst agent"}
    text: "numbers"
  - match: {system: "the critic agent"}
    text: "doubts"
  - match: {system: "the historian agent"}
    text: "past"
  - match: {system: "the editor agent"}
    text: "MERGED {{last_user}}"
  - match: {system: "the classifier agent", last_user: "invoice"}
    text: "billing"
  - match: {system: "the classifier agent"}
    text: "tech"
  - match: {system: "the billing agent"}
    text: "billing answer"
  - match: {system: "the support agent"}
    text: "support answer"
  - match: {system: "the publisher agent"}
    text: "PUBLISHED {{last_user}}"
  - text: "unexpected"
"""

SEQUENTIAL = workflow("""
id: article
steps:
  - {id: research, type: agent, agent: researcher, input: "{{input}}", next: write}
  - {id: write, type: agent, agent: writer, input: "Write {{steps.research.output}}", next: review}
  - {id: review, type: agent, agent: reviewer, input: "{{steps.write.output}}"}
""")

FANOUT = workflow("""
id: panel
steps:
  - {id: ask, type: parallel, branches: [numbers, doubts, history], next: merge}
  - {id: numbers, type: agent, agent: analyst}
  - {id: doubts, type: agent, agent: critic}
  - {id: history, type: agent, agent: historian}
  - id: merge
    type: agent
    agent: editor
    input: "{{steps.numbers.output}}|{{steps.doubts.output}}|{{steps.history.output}}"
""")

LOOP = workflow("""
id: polish
steps:
  - id: polish
    type: loop
    body: draft
    until: {value: "{{steps.judge.output}}", regex: "^APPROVED"}
    max_iterations: 4
    next: publish
  - {id: draft, type: agent, agent: writer, input: "Draft v{{iteration}} of {{input}}", next: judge}
  - {id: judge, type: agent, agent: reviewer, input: "{{steps.draft.output}}"}
  - {id: publish, type: agent, agent: publisher, input: "{{steps.draft.output}}"}
""")

ROUTER = workflow("""
id: desk
steps:
  - {id: triage, type: router, agent: classifier, routes: {billing: pay, tech: fix}}
  - {id: pay, type: agent, agent: billing}
  - {id: fix, type: agent, agent: support}
""")

GATED = workflow("""
id: gated
steps:
  - {id: draft, type: agent, agent: writer, input: "Write {{input}}", next: sign-off}
  - {id: sign-off, type: approval, message: "Publish {{steps.draft.output}}?", next: publish}
  - {id: publish, type: agent, agent: publisher, input: "{{steps.draft.output}}"}
""")

TOOL = workflow("""
id: compute
run_as: calc
steps:
  - {id: calc, type: tool, tool: calculator, arguments: {expression: "{{input}}"}, next: gate}
  - id: gate
    type: condition
    check: {value: "{{steps.calc.output}}", json_path: "$.result", equals: "42"}
    then: yes-path
    otherwise: no-path
  - {id: yes-path, type: agent, agent: publisher, input: "answer {{steps.calc.output}}"}
  - {id: no-path, type: agent, agent: critic}
""")

WORKFLOWS = [SEQUENTIAL, FANOUT, LOOP, ROUTER, GATED, TOOL]


async def test_three_sequential_steps_feed_each_other(
    topics: KafkaSettings, mongo_settings: MongoSettings, mongo_db: object
) -> None:
    async with workflows_stack(topics, mongo_settings, SCRIPT, AGENTS, WORKFLOWS) as ws:
        run_id = await ws.start("article", "tides")
        done = await ws.finished(run_id)
        assert done.kind.value == "workflow.completed", done.reason
        assert done.output == "REVIEWED DRAFT[FACTS(tides)]"
        assert done.workflow_id == "article@1"
        assert ws.kinds(run_id) == [
            "workflow.started", "step.started:research", "step.completed:research",
            "step.started:write", "step.completed:write", "step.started:review",
            "step.completed:review", "workflow.completed"]
        runs = ws.step_runs(run_id)
        assert sorted(runs) == ["research", "review", "write"]
        for step_run in runs.values():
            finished = await ws.rs.finished(step_run)
            assert finished.status is RunStatus.COMPLETED
        doc = await ws.settled(mongo_db, run_id)
        assert doc["status"] == "completed" and doc["outbox"] == []
        # A repeated request is the same run: nothing new is started.
        await ws.start("article", "tides", run_id=run_id)
        again = await ws.start("article", "other")
        await ws.finished(again)
        assert len(ws.step_runs(run_id)) == 3


async def test_parallel_fan_out_of_three_merged_by_a_fourth(
    topics: KafkaSettings, mongo_settings: MongoSettings
) -> None:
    async with workflows_stack(topics, mongo_settings, SCRIPT, AGENTS, WORKFLOWS) as ws:
        run_id = await ws.start("panel", "the economy")
        done = await ws.finished(run_id)
        assert done.kind.value == "workflow.completed", done.reason
        assert done.output == "MERGED numbers|doubts|past"
        kinds = ws.kinds(run_id)
        # All three branches started before any of them completed: they ran concurrently.
        starts = [kinds.index(f"step.started:{s}") for s in ("numbers", "doubts", "history")]
        first_done = min(kinds.index(f"step.completed:{s}")
                         for s in ("numbers", "doubts", "history"))
        assert max(starts) < first_done
        assert kinds.index("step.completed:ask") < kinds.index("step.started:merge")
        assert len(ws.step_runs(run_id)) == 4


async def test_loop_ends_when_its_condition_holds(
    topics: KafkaSettings, mongo_settings: MongoSettings
) -> None:
    async with workflows_stack(topics, mongo_settings, SCRIPT, AGENTS, WORKFLOWS) as ws:
        run_id = await ws.start("polish", "a poem")
        done = await ws.finished(run_id)
        assert done.kind.value == "workflow.completed", done.reason
        assert done.output == "PUBLISHED version 2"
        assert sorted(ws.step_runs(run_id)) == [
            "polish.1/draft", "polish.1/judge", "polish.2/draft", "polish.2/judge", "publish"]
        loop_done = await ws.wait(run_id, "step.completed", "polish")
        assert loop_done.data == {"iterations": 2, "condition_met": True}


async def test_router_chooses_a_branch(
    topics: KafkaSettings, mongo_settings: MongoSettings
) -> None:
    async with workflows_stack(topics, mongo_settings, SCRIPT, AGENTS, WORKFLOWS) as ws:
        billing = await ws.start("desk", "my invoice is wrong")
        tech = await ws.start("desk", "the app crashes")
        assert (await ws.finished(billing)).output == "billing answer"
        assert (await ws.finished(tech)).output == "support answer"
        assert sorted(ws.step_runs(billing)) == ["pay", "triage"]
        assert sorted(ws.step_runs(tech)) == ["fix", "triage"]
        routed = await ws.wait(billing, "step.completed", "triage")
        assert routed.output == "billing" and routed.data == {"next": "pay"}


async def test_approval_waits_then_continues(
    topics: KafkaSettings, mongo_settings: MongoSettings
) -> None:
    async with workflows_stack(topics, mongo_settings, SCRIPT, AGENTS, WORKFLOWS) as ws:
        run_id = await ws.start("gated", "news")
        waiting = await ws.wait(run_id, "workflow.awaiting_approval", "sign-off")
        assert waiting.data["message"] == "Publish DRAFT[news]?"
        assert "publish" not in ws.step_runs(run_id)  # nothing moves while it waits
        await ws.command(run_id, WorkflowCommandKind.APPROVE, reason="ship it")
        done = await ws.finished(run_id)
        assert done.kind.value == "workflow.completed", done.reason
        assert done.output == "PUBLISHED DRAFT[news]"
        resumed = await ws.wait(run_id, "workflow.resumed", "sign-off")
        assert resumed.data == {"approved_by": "user:op-1"}

        rejected = await ws.start("gated", "gossip")
        await ws.wait(rejected, "workflow.awaiting_approval")
        await ws.command(rejected, WorkflowCommandKind.REJECT, step="sign-off", reason="no")
        failed = await ws.finished(rejected)
        assert failed.kind.value == "workflow.failed"
        assert "rejected by user:op-1: no" in (failed.reason or "")


async def test_tool_step_runs_through_the_tools_service_under_an_agents_allowlist(
    topics: KafkaSettings, mongo_settings: MongoSettings
) -> None:
    refused = workflow("""
id: sneaky
run_as: writer
steps: [{id: calc, type: tool, tool: calculator, arguments: {expression: "1+1"}}]
""")
    async with workflows_stack(topics, mongo_settings, SCRIPT, AGENTS, [*WORKFLOWS, refused],
                               with_tools=True) as ws:
        run_id = await ws.start("compute", "6*7")
        done = await ws.finished(run_id)
        assert done.kind.value == "workflow.completed", done.reason
        calc = await ws.wait(run_id, "step.completed", "calc")
        assert json.loads(calc.output or "")["result"] == 42
        assert done.output is not None and done.output.startswith("PUBLISHED answer")
        denied = await ws.finished(await ws.start("sneaky", "x"))
        assert denied.kind.value == "workflow.failed"
        assert "not_allowed" in (denied.reason or ""), denied.reason


async def test_cancel_stops_the_workflow_and_its_runs(
    topics: KafkaSettings, mongo_settings: MongoSettings
) -> None:
    async with workflows_stack(topics, mongo_settings, SCRIPT, AGENTS, WORKFLOWS) as ws:
        run_id = await ws.start("gated", "later")
        await ws.wait(run_id, "workflow.awaiting_approval")
        await ws.command(run_id, WorkflowCommandKind.CANCEL, reason="not needed")
        done = await ws.finished(run_id)
        assert done.kind.value == "workflow.cancelled"
        assert done.reason == "cancelled by user:op-1: not needed"
        unknown = await ws.finished(await ws.start("no-such-workflow", "x"))
        assert unknown.reason == "unknown workflow 'no-such-workflow'"


async def test_python_client_runs_and_follows_a_workflow(
    topics: KafkaSettings, mongo_settings: MongoSettings
) -> None:
    from mindstream.client import MindstreamClient, WorkflowFailedError

    async with workflows_stack(topics, mongo_settings, SCRIPT, AGENTS, WORKFLOWS) as ws, \
            MindstreamClient(topics.bootstrap_servers, topic_prefix=topics.topic_prefix) as client:
        final = await client.run_workflow("article", "waves", user="u-2", timeout=90)
        assert final.output == "REVIEWED DRAFT[FACTS(waves)]"
        seen = [e.kind.value async for e in client.follow_workflow("desk", "an invoice",
                                                                   timeout=90)]
        assert seen[0] == "workflow.started" and seen[-1] == "workflow.completed"
        assert seen.count("step.completed") == 2
        with pytest.raises(WorkflowFailedError, match="unknown workflow 'ghost'"):
            await client.run_workflow("ghost", "x", timeout=90)
        assert ws.app is not None
