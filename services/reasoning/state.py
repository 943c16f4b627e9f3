"""The run state machine, as pure code.

::

    requested ──Start──▶ running ──Complete──▶ completed
                          │  ▲
             ModelReplied │  │ last outstanding call resolved
             (tool calls) ▼  │
            awaiting_approval ──Approve/Reject──▶ awaiting_child / awaiting_tools / running
            awaiting_child    ──ToolResult──────▶ awaiting_tools / running
            awaiting_tools    ──ToolResult──────▶ running

    any non-terminal ──Fail──▶ failed        any non-terminal ──Cancel──▶ cancelled

A model reply may ask for several calls at once (parallel tool calls, delegation to a
child agent, tools that need approval); the run waits in the most blocking state that
still has an outstanding call (approval, then child, then tools) and returns to
``running`` when every call of the batch is resolved. Tool result messages are then
appended in the order the model asked for them, so a replay builds the same history.

Terminal states absorb every event (a late tool result after a cancel is normal under
at-least-once delivery), and so do repeats: a second result for a call already resolved,
a second approval or rejection of a call already decided (the first one stands).
Anything else the state does not allow raises :class:`IllegalTransition`.
Each accepted event returns a new :class:`RunState` with ``version`` + 1; an absorbed
event returns the very same object, so callers can skip the write with ``new is old``.
"""

from __future__ import annotations

import enum
import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.reasoning.errors import IllegalTransition

__all__ = [
    "TERMINAL",
    "Approve",
    "CallStatus",
    "Cancel",
    "Complete",
    "Decision",
    "Fail",
    "ModelClaim",
    "ModelReplied",
    "PendingCall",
    "Reject",
    "RequestedCall",
    "RunEvent",
    "RunLimits",
    "RunState",
    "RunStatus",
    "Start",
    "ToolResult",
    "check_delegation",
    "check_limits",
    "check_tool_budget",
    "next_step",
    "transition",
]


class RunStatus(enum.StrEnum):
    REQUESTED = "requested"
    RUNNING = "running"
    AWAITING_TOOLS = "awaiting_tools"
    AWAITING_APPROVAL = "awaiting_approval"
    AWAITING_CHILD = "awaiting_child"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})
_WAITING = frozenset(
    {RunStatus.AWAITING_TOOLS, RunStatus.AWAITING_APPROVAL, RunStatus.AWAITING_CHILD}
)


class CallStatus(enum.StrEnum):
    AWAITING_APPROVAL = "awaiting_approval"
    PENDING = "pending"  # dispatched (or to be dispatched) to the tools service
    AWAITING_CHILD = "awaiting_child"  # delegated to a child run
    COMPLETED = "completed"
    FAILED = "failed"
    REJECTED = "rejected"


_OUTSTANDING = frozenset(
    {CallStatus.AWAITING_APPROVAL, CallStatus.PENDING, CallStatus.AWAITING_CHILD}
)


class PendingCall(BaseModel):
    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    status: CallStatus = CallStatus.PENDING
    result: Any = None
    error: str | None = None
    child_run_id: str | None = None
    child_session_id: str | None = None
    kind: Literal["tool", "knowledge", "delegate", "handoff"] = "tool"


class RunLimits(BaseModel):
    model_config = ConfigDict(frozen=True)

    max_model_calls: int = Field(default=10, ge=1)
    max_tool_calls: int = Field(default=20, ge=0)
    token_budget: int | None = Field(default=None, ge=1)
    max_depth: int = Field(default=3, ge=0)


class ModelClaim(BaseModel):
    """Who is calling the model for the run's next step, and until when that claim holds.

    Written with the version check before the call, so of two handlers that find the
    run ``running`` only the one whose claim was stored calls the model. ``until``
    outlasts the model client's own time budget: past it the claimant has given up
    or died, and the sweeper may claim the step again.
    """

    owner: str
    until: datetime


class RunState(BaseModel):
    """A run as stored in the ``runs`` collection (one document per run)."""

    run_id: str
    session_id: str
    agent_id: str
    agent_version: int = 1
    user_id: str
    status: RunStatus = RunStatus.REQUESTED
    version: int = 0  # optimistic concurrency: bumped by every accepted event
    messages: list[dict[str, Any]] = Field(default_factory=list)  # OpenAI wire shape
    pending_tool_calls: dict[str, PendingCall] = Field(default_factory=dict)
    batch: list[str] = Field(default_factory=list)  # call ids of the latest model reply
    model_calls: int = 0
    tool_calls: int = 0
    tokens_used: int = 0
    limits: RunLimits = Field(default_factory=RunLimits)
    deadline: datetime | None = None
    parent_run_id: str | None = None
    depth: int = 0
    output: str | None = None
    structured_output: dict[str, Any] | None = None
    failure_reason: str | None = None
    # Bookkeeping of the service around the state machine (not touched by transition()):
    seq: int = 0  # the next RunEvent seq of this run
    step: int = 0  # persisted steps so far; outbox message ids derive from it
    turn_start: int = 0  # index in ``messages`` of this run's user turn (history before it)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reply_topic: str | None = None
    parent_session_id: str | None = None
    handoff_call_id: str | None = None  # route mode: this call's answer is the run's answer
    model_claim: ModelClaim | None = None  # a model call in progress; cleared by the next step
    priority: str = "normal"  # RunRequested.priority: admission of its first model call
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    updated_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def outstanding(self) -> list[str]:
        return [c for c in self.batch if self.pending_tool_calls[c].status in _OUTSTANDING]


# --- events ---------------------------------------------------------------------------------


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Start(_Event):
    kind: Literal["start"] = "start"


class RequestedCall(_Event):
    call_id: str
    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    requires_approval: bool = False
    child_run_id: str | None = None  # set when the call delegates to another agent
    child_session_id: str | None = None
    kind: Literal["tool", "knowledge", "delegate", "handoff"] = "tool"


class ModelReplied(_Event):
    kind: Literal["model_replied"] = "model_replied"
    content: str = ""
    calls: list[RequestedCall] = Field(default_factory=list)
    tokens: int = Field(default=0, ge=0)


class Approve(_Event):
    kind: Literal["approve"] = "approve"
    call_id: str


class Reject(_Event):
    kind: Literal["reject"] = "reject"
    call_id: str
    reason: str = "rejected by operator"


class ToolResult(_Event):
    """A tool's result, a knowledge hit list, or a child run's output: all answer a call."""

    kind: Literal["tool_result"] = "tool_result"
    call_id: str
    ok: bool = True
    content: Any = None
    error: str | None = None


class Complete(_Event):
    kind: Literal["complete"] = "complete"
    output: str


class Fail(_Event):
    kind: Literal["fail"] = "fail"
    reason: str


class Cancel(_Event):
    kind: Literal["cancel"] = "cancel"
    reason: str = "cancelled"


RunEvent = Annotated[
    Start | ModelReplied | Approve | Reject | ToolResult | Complete | Fail | Cancel,
    Field(discriminator="kind"),
]


# --- transitions ----------------------------------------------------------------------------


def _illegal(run: RunState, event: _Event, detail: str = "") -> IllegalTransition:
    return IllegalTransition(
        run.status.value, str(getattr(event, "kind", type(event).__name__)), detail
    )


def _tool_message(call_id: str, call: PendingCall) -> dict[str, Any]:
    if call.status is CallStatus.COMPLETED:
        body = call.result if isinstance(call.result, str) else json.dumps(call.result, default=str)
    else:
        body = f"error: {call.error or call.status.value}"
    return {"role": "tool", "tool_call_id": call_id, "content": body}


def _settle(run: RunState) -> None:
    """Set the status from the outstanding calls; append results once all are in."""
    statuses = {run.pending_tool_calls[c].status for c in run.outstanding()}
    if CallStatus.AWAITING_APPROVAL in statuses:
        run.status = RunStatus.AWAITING_APPROVAL
    elif CallStatus.AWAITING_CHILD in statuses:
        run.status = RunStatus.AWAITING_CHILD
    elif CallStatus.PENDING in statuses:
        run.status = RunStatus.AWAITING_TOOLS
    else:
        run.messages.extend(_tool_message(c, run.pending_tool_calls[c]) for c in run.batch)
        run.batch = []
        run.status = RunStatus.RUNNING


def _apply_model_reply(run: RunState, event: ModelReplied) -> None:
    run.model_calls += 1
    run.tokens_used += event.tokens
    message: dict[str, Any] = {"role": "assistant", "content": event.content or None}
    if event.calls:
        message["tool_calls"] = [
            {
                "id": c.call_id,
                "type": "function",
                "function": {"name": c.tool, "arguments": json.dumps(c.arguments)},
            }
            for c in event.calls
        ]
    run.messages.append(message)
    for c in event.calls:
        status = (
            CallStatus.AWAITING_APPROVAL
            if c.requires_approval
            else CallStatus.AWAITING_CHILD
            if c.child_run_id
            else CallStatus.PENDING
        )
        run.pending_tool_calls[c.call_id] = PendingCall(
            tool=c.tool,
            arguments=c.arguments,
            status=status,
            child_run_id=c.child_run_id,
            child_session_id=c.child_session_id,
            kind=c.kind,
        )
    run.tool_calls += len(event.calls)
    run.batch = [c.call_id for c in event.calls]
    _settle(run)


def _call_of(run: RunState, event: Approve | Reject | ToolResult) -> PendingCall:
    call = run.pending_tool_calls.get(event.call_id)
    if call is None:
        raise _illegal(run, event, f"unknown call_id '{event.call_id}'")
    return call


def _apply_decision(run: RunState, event: Approve | Reject) -> bool:
    call = _call_of(run, event)
    if call.status is not CallStatus.AWAITING_APPROVAL:
        return False
    if isinstance(event, Reject):
        call.status, call.error = CallStatus.REJECTED, event.reason
    else:
        call.status = CallStatus.AWAITING_CHILD if call.child_run_id else CallStatus.PENDING
    _settle(run)
    return True


def _apply_result(run: RunState, event: ToolResult) -> bool:
    call = _call_of(run, event)
    if call.status not in _OUTSTANDING:
        return False
    if call.status is CallStatus.AWAITING_APPROVAL:
        raise _illegal(run, event, f"call '{event.call_id}' is not approved yet")
    call.status = CallStatus.COMPLETED if event.ok else CallStatus.FAILED
    call.result, call.error = event.content, event.error
    _settle(run)
    return True


def transition(run: RunState, event: _Event, *, now: datetime | None = None) -> RunState:
    """Apply ``event``; return the new state, or ``run`` itself when the event is absorbed."""
    if run.terminal:
        return run
    new = run.model_copy(deep=True)
    s = run.status
    match event:
        case Fail(reason=reason):
            new.status, new.failure_reason = RunStatus.FAILED, reason
        case Cancel(reason=reason):
            new.status, new.failure_reason = RunStatus.CANCELLED, reason
        case Start() if s is RunStatus.REQUESTED:
            new.status = RunStatus.RUNNING
        case ModelReplied() if s is RunStatus.RUNNING:
            _apply_model_reply(new, event)
        case Complete(output=output) if s is RunStatus.RUNNING:
            new.status, new.output = RunStatus.COMPLETED, output
        case Approve() | Reject() if s is not RunStatus.REQUESTED:
            if not _apply_decision(new, event):
                return run  # a repeated decision: the first one stands
        case ToolResult() if s is not RunStatus.REQUESTED:
            if not _apply_result(new, event):
                return run  # duplicate delivery of a result already applied
        case _:
            raise _illegal(run, event)
    new.version = run.version + 1
    new.updated_at = now or datetime.now(UTC)
    return new


# --- planning -------------------------------------------------------------------------------


class Decision(BaseModel):
    """What the handler should do next with a run."""

    model_config = ConfigDict(frozen=True)

    action: Literal["start", "call_model", "wait", "fail", "done"]
    reason: str | None = None


def check_limits(run: RunState, now: datetime) -> str | None:
    """The first limit the run has hit, as a failure reason; ``None`` when within limits."""
    lim = run.limits
    if run.deadline is not None and now >= run.deadline:
        return f"limit: deadline {run.deadline.isoformat()} passed"
    if run.model_calls >= lim.max_model_calls:
        return f"limit: max_model_calls={lim.max_model_calls} reached"
    if run.tool_calls > lim.max_tool_calls:
        return f"limit: max_tool_calls={lim.max_tool_calls} exceeded ({run.tool_calls} requested)"
    if lim.token_budget is not None and run.tokens_used >= lim.token_budget:
        return f"limit: token_budget={lim.token_budget} reached ({run.tokens_used} used)"
    return None


def check_tool_budget(run: RunState, requested: int) -> str | None:
    """Whether ``requested`` more tool calls fit; checked before they are dispatched."""
    limit = run.limits.max_tool_calls
    if run.tool_calls + requested > limit:
        return (
            f"limit: max_tool_calls={limit} reached "
            f"({run.tool_calls} made, {requested} more requested)"
        )
    return None


def check_delegation(run: RunState) -> str | None:
    """Whether this run may start a child run (delegation depth is bounded)."""
    if run.depth + 1 > run.limits.max_depth:
        return f"limit: max_depth={run.limits.max_depth} reached"
    return None


def next_step(run: RunState, now: datetime) -> Decision:
    """Decide the next step; limits are checked before every model call and while waiting."""
    if run.terminal:
        return Decision(action="done", reason=run.status.value)
    if run.status is RunStatus.REQUESTED:
        return Decision(action="start")
    if run.status in _WAITING:
        if run.deadline is not None and now >= run.deadline:
            return Decision(
                action="fail",
                reason=f"limit: deadline {run.deadline.isoformat()} passed "
                f"while {run.status.value}",
            )
        return Decision(action="wait", reason=run.status.value)
    reason = check_limits(run, now)
    if reason is not None:
        return Decision(action="fail", reason=reason)
    return Decision(action="call_model")
