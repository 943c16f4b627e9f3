from __future__ import annotations

import json

import pytest

from schemas.common import Actor, ActorKind
from schemas.runs import RunCommand
from schemas.topics import AUDIT, RUNS_COMMANDS
from schemas.workflows import WorkflowEventKind
from services.workflows.engine import RUN_ID_PREFIX, Engine, match_route
from tests.unit.workflows.helpers import Driver, definition

pytestmark = pytest.mark.unit

OP = Actor(kind=ActorKind.USER, id="op-1")

SEQUENTIAL = definition("""
id: review
steps:
  - {id: research, type: agent, agent: researcher, input: "Find facts on {{input}}", next: write}
  - {id: write, type: agent, agent: writer, input: "Write from {{steps.research.output}}", next: check}
  - {id: check, type: agent, agent: reviewer, input: "Review {{steps.write.output}}"}
output: "{{steps.write.output}} / {{steps.check.output}}"
""")


def test_sequential_steps_run_one_after_another_and_feed_each_other() -> None:
    d = Driver(SEQUENTIAL)
    (first,) = d.requests(d.begin())
    assert first.agent_id == "researcher" and first.input == "Find facts on the topic"
    assert first.run_id.startswith(RUN_ID_PREFIX) and first.session_id == "wf-wr-1:research"
    assert first.metadata["workflow_run_id"] == "wr-1" and first.metadata["workflow_step"] == "research"
    (second,) = d.requests(d.answer("research", "FACTS"))
    assert (second.agent_id, second.input) == ("writer", "Write from FACTS")
    (third,) = d.requests(d.answer("write", "DRAFT"))
    assert third.input == "Review DRAFT"
    d.answer("check", "LGTM")
    assert d.state.status.value == "completed" and d.state.output == "DRAFT / LGTM"
    assert d.kinds() == [
        "workflow.started", "step.started:research", "step.completed:research",
        "step.started:write", "step.completed:write", "step.started:check",
        "step.completed:check", "workflow.completed"]
    assert [e.seq for e in d.events()] == list(range(8))
    assert sum(1 for o in d.sent if o.spec is AUDIT) == 2  # started, completed


def test_ids_are_deterministic_and_a_repeat_changes_nothing() -> None:
    a, b = Driver(SEQUENTIAL), Driver(SEQUENTIAL)
    assert [o.id for o in a.begin()] == [o.id for o in b.begin()]
    run_id = a.state.steps["research"].run_id
    assert run_id == b.state.steps["research"].run_id
    a.finish(run_id, "FACTS")
    assert a.finish(run_id, "FACTS") == []  # a redelivered completion is absorbed
    assert a.finish("wfs-unknown", "x") == []


def test_failed_step_fails_the_workflow_with_its_reason() -> None:
    d = Driver(SEQUENTIAL)
    d.begin()
    d.answer("research", "model exploded", ok=False)
    assert d.state.status.value == "failed"
    assert d.state.failure_reason == "step 'research' failed: model exploded"
    assert d.events()[-1].kind is WorkflowEventKind.FAILED


def test_retry_policy_dispatches_a_new_attempt_with_a_new_run_id() -> None:
    d = Driver(definition("""
id: flaky
steps: [{id: a, type: agent, agent: x, retry: {max_attempts: 2}}]
"""))
    d.begin()
    first = d.state.steps["a"].run_id
    (again,) = d.requests(d.answer("a", "boom", ok=False))
    assert again.run_id != first and d.state.steps["a"].attempt == 2
    assert "step.retrying:a" in d.kinds()
    d.answer("a", "fine")
    assert d.state.status.value == "completed" and d.state.output == "fine"


PARALLEL = definition("""
id: fan
steps:
  - {id: fan, type: parallel, branches: [a, b, c], next: merge}
  - {id: a, type: agent, agent: x, input: "A {{input}}"}
  - {id: b, type: agent, agent: y, input: "B {{input}}"}
  - {id: c, type: agent, agent: z, input: "C {{input}}"}
  - {id: merge, type: agent, agent: m, input: "{{steps.a.output}}+{{steps.b.output}}+{{steps.c.output}}"}
""")


def test_parallel_branches_start_together_and_merge_when_all_end() -> None:
    d = Driver(PARALLEL)
    started = d.requests(d.begin())
    assert sorted(r.agent_id for r in started) == ["x", "y", "z"]
    assert d.requests(d.answer("b", "2")) == []
    assert d.requests(d.answer("a", "1")) == []
    (merge,) = d.requests(d.answer("c", "3"))
    assert merge.input == "1+2+3"
    assert json.loads(d.state.steps["fan"].output or "") == {"a": "1", "b": "2", "c": "3"}
    d.answer("merge", "done")
    assert d.state.output == "done"


def test_a_failed_branch_fails_fast_and_cancels_the_others() -> None:
    d = Driver(PARALLEL)
    d.begin()
    out = d.answer("a", "nope", ok=False)
    cancels = [o.message for o in out if o.spec is RUNS_COMMANDS]
    assert d.state.status.value == "failed"
    assert "branch 'a' failed" in (d.state.failure_reason or "")
    assert sorted(c.run_id for c in cancels if isinstance(c, RunCommand)) == sorted(
        d.state.steps[p].run_id or "" for p in ("b", "c"))


LOOP = definition("""
id: refine
steps:
  - id: refine
    type: loop
    body: draft
    until: {value: "{{steps.judge.output}}", regex: "^APPROVED"}
    max_iterations: 3
    next: publish
  - {id: draft, type: agent, agent: writer, input: "draft {{iteration}}", next: judge}
  - {id: judge, type: agent, agent: reviewer, input: "{{steps.draft.output}}"}
  - {id: publish, type: agent, agent: writer, input: "publish {{steps.draft.output}}"}
""")


def test_loop_repeats_its_body_until_the_condition_holds() -> None:
    d = Driver(LOOP)
    (draft1,) = d.requests(d.begin())
    assert draft1.input == "draft 1"
    d.answer("refine.1/draft", "v1")
    (draft2,) = d.requests(d.answer("refine.1/judge", "needs work"))
    assert draft2.input == "draft 2" and draft2.run_id != draft1.run_id
    d.answer("refine.2/draft", "v2")
    (publish,) = d.requests(d.answer("refine.2/judge", "APPROVED, nice"))
    assert publish.input == "publish v2"
    assert d.state.steps["refine"].iteration == 2
    d.answer("publish", "shipped")
    assert d.state.status.value == "completed"
    done = next(e for e in d.events() if e.kind.value == "step.completed" and e.step == "refine")
    assert done.data == {"iterations": 2, "condition_met": True}


def test_loop_stops_at_max_iterations() -> None:
    d = Driver(LOOP)
    d.begin()
    for i in (1, 2, 3):
        d.answer(f"refine.{i}/draft", f"v{i}")
        d.answer(f"refine.{i}/judge", "no")
    assert "refine.4/draft" not in d.state.steps
    assert d.state.steps["publish"].request == "publish v3"


def test_loop_with_an_agent_check_asks_a_yes_no_question() -> None:
    d = Driver(definition("""
id: ask
steps:
  - id: l
    type: loop
    body: w
    until: {agent: judge, question: "Is '{{steps.w.output}}' good?"}
  - {id: w, type: agent, agent: writer}
"""))
    d.begin()
    (judge,) = d.requests(d.answer("l.1/w", "draft"))
    assert judge.agent_id == "judge" and judge.input.startswith("Is 'draft' good?")
    d.answer("l#until.1", "No.")
    d.answer("l.2/w", "better")
    d.answer("l#until.2", "Yes, it is.")
    assert d.state.status.value == "completed" and d.state.output == "better"


ROUTER = definition("""
id: desk
steps:
  - {id: triage, type: router, agent: classifier, routes: {billing: pay, tech: fix}}
  - {id: pay, type: agent, agent: billing}
  - {id: fix, type: agent, agent: support}
""")


def test_router_follows_the_classifiers_answer() -> None:
    d = Driver(ROUTER)
    (ask,) = d.requests(d.begin())
    assert ask.input.endswith("Answer with one of: billing, tech.")
    (chosen,) = d.requests(d.answer("triage", "Tech."))
    assert chosen.agent_id == "support" and "pay" not in d.state.steps
    completed = [e for e in d.events() if e.step == "triage" and e.kind.value == "step.completed"]
    assert completed[0].output == "tech" and completed[0].data == {"next": "fix"}


def test_router_without_a_matching_route_fails_naming_the_answer() -> None:
    d = Driver(ROUTER)
    d.begin()
    d.answer("triage", "weather")
    assert "'weather' matches no route (billing, tech)" in (d.state.failure_reason or "")


def test_match_route() -> None:
    assert match_route(["a", "bb"], " BB ") == "bb"
    assert match_route(["billing", "tech"], "I think this is tech, not billing") == "tech"
    assert match_route(["x"], "none") is None


CONDITION = definition("""
id: cond
steps:
  - {id: score, type: tool, tool: calculator, arguments: {expression: "{{input}}"}, next: gate}
  - id: gate
    type: condition
    check: {value: "{{steps.score.output}}", json_path: "$.result", equals: "42"}
    then: accept
    otherwise: decline
  - {id: accept, type: agent, agent: a, input: "yes"}
  - {id: decline, type: agent, agent: b, input: "no"}
run_as: calc
""")


def test_tool_step_and_json_path_condition() -> None:
    d = Driver(CONDITION, text="6*7")
    (call,) = d.calls(d.begin())
    assert (call.tool, call.arguments, call.agent_id) == ("calculator", {"expression": "6*7"}, "calc")
    (chosen,) = d.requests(d.finish(call.call_id, json.dumps({"result": 42})))
    assert chosen.agent_id == "a"
    assert d.state.steps["gate"].output == "true"


def test_condition_otherwise_missing_ends_the_scope() -> None:
    d = Driver(definition("""
id: c
steps:
  - {id: s, type: agent, agent: a, next: g}
  - {id: g, type: condition, check: {value: "{{steps.s.output}}", equals: "go"}, then: t}
  - {id: t, type: agent, agent: b}
"""))
    d.begin()
    d.answer("s", "stop")
    assert d.state.status.value == "completed" and d.state.output == "false"


APPROVAL = definition("""
id: gated
steps:
  - {id: draft, type: agent, agent: writer, next: ok}
  - {id: ok, type: approval, message: "Publish '{{steps.draft.output}}'?", next: publish}
  - {id: publish, type: agent, agent: publisher, input: "{{steps.draft.output}}"}
""")


def test_approval_waits_for_an_operator_then_continues() -> None:
    d = Driver(APPROVAL)
    d.begin()
    assert d.requests(d.answer("draft", "text")) == []
    waiting = d.events()[-1]
    assert waiting.kind is WorkflowEventKind.AWAITING_APPROVAL
    assert waiting.data["message"] == "Publish 'text'?"
    (publish,) = d.requests(d.step(lambda e: e.approve(None, OP, "looks good")))
    assert publish.agent_id == "publisher"
    assert d.step(lambda e: e.approve(None, OP, None)) == []  # nothing waits any more


def test_rejection_fails_the_workflow() -> None:
    d = Driver(APPROVAL)
    d.begin()
    d.answer("draft", "text")
    d.step(lambda e: e.reject("ok", OP, "not now"))
    assert d.state.failure_reason == (
        "step 'ok' failed: approval 'ok' rejected by user:op-1: not now")


def test_cancel_cancels_runs_in_flight_and_replies() -> None:
    d = Driver(PARALLEL, reply_topic="replies.c1")
    d.begin()
    out = d.step(lambda e: e.cancel(OP, "changed my mind"))
    assert d.state.status.value == "cancelled"
    assert len([o for o in out if o.spec is RUNS_COMMANDS]) == 3
    reply = [o for o in out if o.physical_topic == "replies.c1"]
    assert len(reply) == 1 and reply[0].best_effort
    assert d.step(lambda e: e.cancel(OP, None)) == []


def test_refused_request_without_definition() -> None:
    d = Driver(SEQUENTIAL)
    engine = Engine(None, d.state.model_copy(update={"workflow_version": 0}), d.now)
    engine.refuse("unknown workflow 'nope'")
    assert engine.s.status.value == "failed"
    (failed,) = [o.message for o in engine.out if hasattr(o.message, "kind")]
    assert failed.kind.value == "workflow.failed" and failed.workflow_id == "review"
