"""The run state machine: every transition, absorption, and every limit."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import TypeAdapter

from services.reasoning.errors import IllegalTransition
from services.reasoning.state import (
    Approve,
    CallStatus,
    Cancel,
    Complete,
    Fail,
    ModelReplied,
    Reject,
    RequestedCall,
    RunEvent,
    RunLimits,
    RunState,
    RunStatus,
    Start,
    ToolResult,
    check_delegation,
    check_limits,
    check_tool_budget,
    next_step,
    transition,
)

pytestmark = pytest.mark.unit

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def new_run(**extra: Any) -> RunState:
    base: dict[str, Any] = {
        "run_id": "r1",
        "session_id": "s1",
        "agent_id": "a1",
        "user_id": "u1",
        "created_at": NOW,
        "updated_at": NOW,
        "messages": [{"role": "user", "content": "hi"}],
    }
    return RunState(**(base | extra))


def apply(run: RunState, *events: Any) -> RunState:
    for event in events:
        run = transition(run, event, now=NOW)
    return run


def call(call_id: str, tool: str = "search", **extra: Any) -> RequestedCall:
    return RequestedCall(call_id=call_id, tool=tool, arguments={"q": call_id}, **extra)


def running() -> RunState:
    return apply(new_run(), Start())


def with_status(status: RunStatus) -> RunState:
    """A run brought to ``status`` by legal events only."""
    builders = {
        RunStatus.REQUESTED: new_run,
        RunStatus.RUNNING: running,
        RunStatus.AWAITING_TOOLS: lambda: apply(running(), ModelReplied(calls=[call("c1")])),
        RunStatus.AWAITING_APPROVAL: lambda: apply(
            running(), ModelReplied(calls=[call("c1", requires_approval=True)])
        ),
        RunStatus.AWAITING_CHILD: lambda: apply(
            running(), ModelReplied(calls=[call("c1", "agent:helper", child_run_id="r1.c1")])
        ),
        RunStatus.COMPLETED: lambda: apply(running(), Complete(output="done")),
        RunStatus.FAILED: lambda: apply(running(), Fail(reason="boom")),
        RunStatus.CANCELLED: lambda: apply(running(), Cancel()),
    }
    run = builders[status]()
    assert run.status is status
    return run


# --- happy paths ----------------------------------------------------------------------------


def test_start_moves_requested_to_running_and_bumps_version() -> None:
    run = new_run()
    started = transition(run, Start(), now=NOW + timedelta(seconds=1))
    assert started.status is RunStatus.RUNNING
    assert started.version == run.version + 1
    assert started.updated_at == NOW + timedelta(seconds=1)
    assert run.status is RunStatus.REQUESTED  # the input is never mutated


def test_final_model_reply_then_complete() -> None:
    run = apply(running(), ModelReplied(content="hello", tokens=12))
    assert run.status is RunStatus.RUNNING
    assert (run.model_calls, run.tokens_used, run.tool_calls) == (1, 12, 0)
    assert run.messages[-1] == {"role": "assistant", "content": "hello"}
    done = apply(run, Complete(output="hello"))
    assert done.status is RunStatus.COMPLETED
    assert done.output == "hello"
    assert done.version == 3


def test_parallel_tool_calls_wait_then_results_append_in_model_order() -> None:
    run = apply(running(), ModelReplied(calls=[call("c1"), call("c2", "fetch")], tokens=5))
    assert run.status is RunStatus.AWAITING_TOOLS
    assert run.tool_calls == 2
    wire = run.messages[-1]["tool_calls"]
    assert [(c["id"], c["function"]["name"]) for c in wire] == [("c1", "search"), ("c2", "fetch")]
    assert json.loads(wire[0]["function"]["arguments"]) == {"q": "c1"}
    assert run.messages[-1]["content"] is None

    run = apply(run, ToolResult(call_id="c2", content={"page": 1}))
    assert run.status is RunStatus.AWAITING_TOOLS
    assert run.pending_tool_calls["c2"].status is CallStatus.COMPLETED
    run = apply(run, ToolResult(call_id="c1", ok=False, error="timeout"))
    assert run.status is RunStatus.RUNNING
    assert run.messages[-2:] == [
        {"role": "tool", "tool_call_id": "c1", "content": "error: timeout"},
        {"role": "tool", "tool_call_id": "c2", "content": '{"page": 1}'},
    ]
    assert run.batch == []


def test_string_results_are_passed_verbatim() -> None:
    run = apply(
        running(), ModelReplied(calls=[call("c1")]), ToolResult(call_id="c1", content="plain")
    )
    assert run.messages[-1]["content"] == "plain"


def test_approval_then_result() -> None:
    run = apply(running(), ModelReplied(calls=[call("c1", requires_approval=True), call("c2")]))
    assert run.status is RunStatus.AWAITING_APPROVAL
    run = apply(run, ToolResult(call_id="c2", content="ok"))  # unapproved calls run meanwhile
    assert run.status is RunStatus.AWAITING_APPROVAL
    run = apply(run, Approve(call_id="c1"))
    assert run.status is RunStatus.AWAITING_TOOLS
    assert run.pending_tool_calls["c1"].status is CallStatus.PENDING
    run = apply(run, ToolResult(call_id="c1", content="done"))
    assert run.status is RunStatus.RUNNING


def test_rejection_becomes_an_error_result() -> None:
    run = apply(
        running(),
        ModelReplied(calls=[call("c1", requires_approval=True)]),
        Reject(call_id="c1", reason="too risky"),
    )
    assert run.status is RunStatus.RUNNING
    assert run.pending_tool_calls["c1"].status is CallStatus.REJECTED
    assert run.messages[-1] == {"role": "tool", "tool_call_id": "c1", "content": "error: too risky"}


def test_delegation_waits_for_the_child() -> None:
    run = apply(running(), ModelReplied(calls=[call("c1", "agent:helper", child_run_id="r1.c1")]))
    assert run.status is RunStatus.AWAITING_CHILD
    assert run.pending_tool_calls["c1"].child_run_id == "r1.c1"
    run = apply(run, ToolResult(call_id="c1", content="child says hi"))
    assert run.status is RunStatus.RUNNING
    assert run.messages[-1]["content"] == "child says hi"


def test_most_blocking_wait_wins_approval_then_child_then_tools() -> None:
    run = apply(
        running(),
        ModelReplied(
            calls=[
                call("t"),
                call("d", "agent:x", child_run_id="r1.d"),
                call("a", requires_approval=True),
            ]
        ),
    )
    assert run.status is RunStatus.AWAITING_APPROVAL
    run = apply(run, Approve(call_id="a"))
    assert run.status is RunStatus.AWAITING_CHILD
    run = apply(run, ToolResult(call_id="d", content="x"))
    assert run.status is RunStatus.AWAITING_TOOLS
    run = apply(run, ToolResult(call_id="a", content="x"), ToolResult(call_id="t", content="x"))
    assert run.status is RunStatus.RUNNING
    assert [m["tool_call_id"] for m in run.messages if m["role"] == "tool"] == ["t", "d", "a"]


def test_approved_delegation_goes_to_the_child() -> None:
    run = apply(
        running(),
        ModelReplied(calls=[call("d", "agent:x", child_run_id="r1.d", requires_approval=True)]),
    )
    assert run.status is RunStatus.AWAITING_APPROVAL
    assert apply(run, Approve(call_id="d")).status is RunStatus.AWAITING_CHILD


@pytest.mark.parametrize(
    "status",
    [s for s in RunStatus if s not in {RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED}],
)
@pytest.mark.parametrize(
    ("event", "target"),
    [(Fail(reason="x"), RunStatus.FAILED), (Cancel(reason="x"), RunStatus.CANCELLED)],
)
def test_fail_and_cancel_from_every_live_state(
    status: RunStatus, event: Any, target: RunStatus
) -> None:
    run = apply(with_status(status), event)
    assert run.status is target
    assert run.failure_reason == "x"


# --- absorption -----------------------------------------------------------------------------

ALL_EVENTS = [
    Start(),
    ModelReplied(content="x"),
    Approve(call_id="c1"),
    Reject(call_id="c1"),
    ToolResult(call_id="c1"),
    Complete(output="x"),
    Fail(reason="x"),
    Cancel(),
]


@pytest.mark.parametrize("status", [RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED])
@pytest.mark.parametrize("event", ALL_EVENTS, ids=lambda e: e.kind)
def test_terminal_states_absorb_everything(status: RunStatus, event: Any) -> None:
    run = with_status(status)
    assert transition(run, event) is run


def test_duplicate_result_after_settling_is_absorbed() -> None:
    run = apply(running(), ModelReplied(calls=[call("c1")]), ToolResult(call_id="c1", content="a"))
    assert transition(run, ToolResult(call_id="c1", content="b")) is run


def test_duplicate_result_while_waiting_is_absorbed() -> None:
    run = apply(
        running(),
        ModelReplied(calls=[call("c1"), call("c2")]),
        ToolResult(call_id="c1", content="a"),
    )
    assert transition(run, ToolResult(call_id="c1", content="b")) is run


def test_repeated_approval_decision_keeps_the_first() -> None:
    run = apply(
        running(),
        ModelReplied(calls=[call("c1", requires_approval=True), call("c2")]),
        Approve(call_id="c1"),
    )
    assert transition(run, Reject(call_id="c1")) is run


# --- illegal --------------------------------------------------------------------------------

ILLEGAL = [
    (RunStatus.REQUESTED, ModelReplied(content="x")),
    (RunStatus.REQUESTED, Complete(output="x")),
    (RunStatus.REQUESTED, ToolResult(call_id="c1")),
    (RunStatus.REQUESTED, Approve(call_id="c1")),
    (RunStatus.RUNNING, Start()),
    (RunStatus.RUNNING, ToolResult(call_id="nope")),
    (RunStatus.RUNNING, Approve(call_id="nope")),
    (RunStatus.AWAITING_TOOLS, Start()),
    (RunStatus.AWAITING_TOOLS, ModelReplied(content="x")),
    (RunStatus.AWAITING_TOOLS, Complete(output="x")),
    (RunStatus.AWAITING_TOOLS, ToolResult(call_id="unknown")),
    (RunStatus.AWAITING_APPROVAL, ToolResult(call_id="c1")),  # not approved yet
    (RunStatus.AWAITING_APPROVAL, ModelReplied(content="x")),
    (RunStatus.AWAITING_APPROVAL, Complete(output="x")),
    (RunStatus.AWAITING_APPROVAL, Reject(call_id="unknown")),
    (RunStatus.AWAITING_CHILD, ModelReplied(content="x")),
    (RunStatus.AWAITING_CHILD, Complete(output="x")),
    (RunStatus.AWAITING_CHILD, Start()),
]


@pytest.mark.parametrize(
    ("status", "event"), ILLEGAL, ids=[f"{s.value}-{e.kind}" for s, e in ILLEGAL]
)
def test_illegal_transitions_raise(status: RunStatus, event: Any) -> None:
    run = with_status(status)
    with pytest.raises(IllegalTransition, match=f"event '{event.kind}' in status '{status.value}'"):
        transition(run, event)


# --- serialisation --------------------------------------------------------------------------


def test_events_parse_from_json_by_kind() -> None:
    adapter: TypeAdapter[Any] = TypeAdapter(RunEvent)
    event = adapter.validate_json('{"kind": "tool_result", "call_id": "c9", "content": [1]}')
    assert isinstance(event, ToolResult)
    assert event.call_id == "c9"
    with pytest.raises(ValueError, match="kind"):
        adapter.validate_python({"kind": "explode"})


def test_run_state_round_trips_through_a_document() -> None:
    run = apply(running(), ModelReplied(calls=[call("c1", requires_approval=True)]))
    again = RunState.model_validate(run.model_dump(mode="json"))
    assert again == run


# --- planning and limits --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "action"),
    [
        (RunStatus.REQUESTED, "start"),
        (RunStatus.RUNNING, "call_model"),
        (RunStatus.AWAITING_TOOLS, "wait"),
        (RunStatus.AWAITING_APPROVAL, "wait"),
        (RunStatus.AWAITING_CHILD, "wait"),
        (RunStatus.COMPLETED, "done"),
        (RunStatus.FAILED, "done"),
        (RunStatus.CANCELLED, "done"),
    ],
)
def test_next_step_by_status(status: RunStatus, action: str) -> None:
    assert next_step(with_status(status), NOW).action == action


@pytest.mark.parametrize(
    ("limits", "counters", "reason"),
    [
        (RunLimits(max_model_calls=5), {"model_calls": 5}, "limit: max_model_calls=5 reached"),
        (
            RunLimits(max_tool_calls=3),
            {"tool_calls": 4},
            "limit: max_tool_calls=3 exceeded (4 requested)",
        ),
        (
            RunLimits(token_budget=1000),
            {"tokens_used": 1200},
            "limit: token_budget=1000 reached (1200 used)",
        ),
    ],
)
def test_limits_fail_the_run_with_a_clear_reason(
    limits: RunLimits, counters: dict[str, int], reason: str
) -> None:
    run = running().model_copy(update={"limits": limits, **counters})
    assert check_limits(run, NOW) == reason
    decision = next_step(run, NOW)
    assert decision.action == "fail"
    assert decision.reason == reason


def test_just_below_the_limits_the_model_may_be_called() -> None:
    run = running().model_copy(
        update={
            "limits": RunLimits(max_model_calls=5, max_tool_calls=3, token_budget=1000),
            "model_calls": 4,
            "tool_calls": 3,
            "tokens_used": 999,
            "deadline": NOW + timedelta(seconds=1),
        }
    )
    assert check_limits(run, NOW) is None
    assert next_step(run, NOW).action == "call_model"


def test_deadline_fails_running_and_waiting_runs() -> None:
    deadline = NOW - timedelta(seconds=1)
    live = running().model_copy(update={"deadline": deadline})
    assert next_step(live, NOW).reason == f"limit: deadline {deadline.isoformat()} passed"
    waiting = with_status(RunStatus.AWAITING_TOOLS).model_copy(update={"deadline": deadline})
    decision = next_step(waiting, NOW)
    assert decision.action == "fail"
    assert decision.reason == f"limit: deadline {deadline.isoformat()} passed while awaiting_tools"


def test_tool_budget_is_checked_before_dispatch() -> None:
    run = running().model_copy(update={"limits": RunLimits(max_tool_calls=3), "tool_calls": 2})
    assert check_tool_budget(run, 1) is None
    assert check_tool_budget(run, 2) == "limit: max_tool_calls=3 reached (2 made, 2 more requested)"


def test_delegation_depth_is_bounded() -> None:
    assert check_delegation(new_run(depth=2, limits=RunLimits(max_depth=3))) is None
    assert check_delegation(new_run(depth=3, limits=RunLimits(max_depth=3))) == (
        "limit: max_depth=3 reached"
    )
