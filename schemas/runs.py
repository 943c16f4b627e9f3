"""The life of a run: request, context, events, commands, completion.

The flow: a client publishes :class:`RunRequested`; memory answers with
:class:`RunReady` (the request plus assembled context); reasoning streams
:class:`RunEvent` while it works, obeys :class:`RunCommand` and ends with
:class:`RunCompleted`. All of these are keyed by ``session_id``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import ClassVar

from pydantic import Field, model_validator

from schemas.base import (
    AgentRef,
    ContractModel,
    Id,
    JsonDict,
    Label,
    LongText,
    Message,
    Metadata,
    ShortText,
    Text,
    ToolName,
    TopicName,
    UtcDatetime,
)
from schemas.common import Actor, ChatMessage, Usage
from schemas.knowledge import KnowledgeHit

__all__ = [
    "MAX_DELEGATION_DEPTH",
    "MemoryItem",
    "RunCommand",
    "RunCommandKind",
    "RunCompleted",
    "RunContext",
    "RunEvent",
    "RunEventKind",
    "RunMetrics",
    "RunPriority",
    "RunReady",
    "RunRequested",
    "RunStatus",
]

MAX_DELEGATION_DEPTH = 8
"""Hard ceiling on team delegation depth, whatever an agent definition says."""


class RunPriority(StrEnum):
    """Scheduling hint; high-priority runs are served first when queues build up."""

    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"


class RunRequested(Message):
    """The public input: run this agent on this input in this session."""

    ce_type: ClassVar[str] = "mindstream.runs.requested"

    run_id: Id = Field(
        description="Chosen by the client; the idempotency key (a repeat is the same run)."
    )
    agent_id: AgentRef = Field(description="Agent to run, optionally pinned: 'support@3'.")
    session_id: Id = Field(description="Conversation the run belongs to; the Kafka key.")
    user_id: Id = Field(description="User on whose behalf the run happens; memories follow them.")
    input: Text = Field(min_length=1, description="The user's message.")
    reply_topic: TopicName | None = Field(
        default=None, description="Extra topic to receive the RunCompleted, if set."
    )
    parent_run_id: Id | None = Field(
        default=None, description="For a run delegated by a team: the run that delegated it."
    )
    depth: int = Field(
        default=0,
        ge=0,
        le=MAX_DELEGATION_DEPTH,
        description="Delegation depth: 0 for a client's run, parent depth + 1 for a child.",
    )
    priority: RunPriority = Field(default=RunPriority.NORMAL, description="low, normal or high.")
    metadata: Metadata = Field(default_factory=dict, description="Client labels, echoed back.")
    requested_at: UtcDatetime = Field(
        default_factory=lambda: datetime.now(UTC),
        description="When the client asked; defaults to when the message was built.",
    )

    @model_validator(mode="after")
    def _child_has_parent(self) -> RunRequested:
        if (self.parent_run_id is None) != (self.depth == 0):
            raise ValueError("parent_run_id is set exactly when depth > 0")
        if self.parent_run_id == self.run_id:
            raise ValueError("a run cannot be its own parent")
        return self


class MemoryItem(ContractModel):
    """A durable fact learned about the user."""

    id: Id = Field(description="Id of the memory.")
    text: ShortText = Field(min_length=1, description="The fact, in one sentence.")
    topic: Label | None = Field(default=None, description="Coarse subject, e.g. 'preferences'.")


class RunContext(ContractModel):
    """What memory assembled for the model, within the agent's token budget."""

    history: list[ChatMessage] = Field(
        default_factory=list,
        max_length=500,
        description="Earlier turns of the session, oldest first.",
    )
    summary: Text | None = Field(default=None, description="Running summary of older turns.")
    memories: list[MemoryItem] = Field(
        default_factory=list, max_length=100, description="Relevant facts about the user."
    )
    knowledge: list[KnowledgeHit] = Field(
        default_factory=list, max_length=50, description="Knowledge chunks relevant to the input."
    )
    token_estimate: int = Field(
        default=0, ge=0, description="Estimated tokens of everything included above."
    )


class RunReady(Message):
    """A request with its context: everything reasoning needs to start."""

    ce_type: ClassVar[str] = "mindstream.runs.ready"

    run_id: Id = Field(description="Same as request.run_id.")
    session_id: Id = Field(description="Same as request.session_id; the Kafka key.")
    request: RunRequested = Field(description="The request, unchanged.")
    context: RunContext = Field(description="Assembled history, summary, memories, knowledge.")
    prepared_at: UtcDatetime = Field(description="When memory assembled the context.")

    @model_validator(mode="after")
    def _ids_match_request(self) -> RunReady:
        if self.run_id != self.request.run_id or self.session_id != self.request.session_id:
            raise ValueError("run_id and session_id must match the request")
        return self


class RunEventKind(StrEnum):
    """What happened in a run."""

    RUN_STARTED = "run.started"
    MODEL_DELTA = "model.delta"
    MODEL_COMPLETED = "model.completed"
    TOOL_REQUESTED = "tool.requested"
    TOOL_COMPLETED = "tool.completed"
    GUARDRAIL_TRIGGERED = "guardrail.triggered"
    RUN_AWAITING_APPROVAL = "run.awaiting_approval"
    RUN_RESUMED = "run.resumed"
    RUN_CHILD_STARTED = "run.child_started"
    RUN_CHILD_COMPLETED = "run.child_completed"
    RUN_COMPLETED = "run.completed"
    RUN_FAILED = "run.failed"
    RUN_CANCELLED = "run.cancelled"


_NEEDS_CALL = frozenset(
    {
        RunEventKind.TOOL_REQUESTED,
        RunEventKind.TOOL_COMPLETED,
        RunEventKind.RUN_AWAITING_APPROVAL,
    }
)
_NEEDS_CHILD = frozenset({RunEventKind.RUN_CHILD_STARTED, RunEventKind.RUN_CHILD_COMPLETED})
_NEEDS_REASON = frozenset(
    {RunEventKind.RUN_FAILED, RunEventKind.RUN_CANCELLED, RunEventKind.GUARDRAIL_TRIGGERED}
)


class RunEvent(Message):
    """A step of a run, for live streaming, telemetry and the audit trail.

    ``seq`` increases by one per event of a run, so a reader can order events
    and spot gaps; with a deterministic message id it also makes replays
    idempotent.
    """

    ce_type: ClassVar[str] = "mindstream.runs.event"

    run_id: Id = Field(description="Run the event belongs to.")
    session_id: Id = Field(description="Session of the run; the Kafka key.")
    agent_id: AgentRef = Field(description="Agent running.")
    seq: int = Field(ge=0, description="Position of the event in its run, from 0.")
    kind: RunEventKind = Field(description="What happened.")
    at: UtcDatetime = Field(description="When it happened.")
    text: Text | None = Field(default=None, description="Model text (required for model.delta).")
    call_id: Id | None = Field(default=None, description="Tool call concerned (tool.*, approval).")
    tool: ToolName | None = Field(default=None, description="Tool concerned (tool.*, approval).")
    child_run_id: Id | None = Field(default=None, description="Child run (run.child_*).")
    reason: ShortText | None = Field(
        default=None, description="Why (required for run.failed, run.cancelled, guardrail.*)."
    )
    usage: Usage | None = Field(default=None, description="Tokens of a model call, if known.")
    data: JsonDict = Field(default_factory=dict, description="Small extra detail for the kind.")

    @model_validator(mode="after")
    def _kind_has_its_fields(self) -> RunEvent:
        missing: list[str] = []
        if self.kind is RunEventKind.MODEL_DELTA and self.text is None:
            missing.append("text")
        if self.kind in _NEEDS_CALL:
            missing += [f for f in ("call_id", "tool") if getattr(self, f) is None]
        if self.kind in _NEEDS_CHILD and self.child_run_id is None:
            missing.append("child_run_id")
        if self.kind in _NEEDS_REASON and self.reason is None:
            missing.append("reason")
        if missing:
            raise ValueError(f"{self.kind.value} needs {', '.join(missing)}")
        return self


class RunStatus(StrEnum):
    """How a run ended."""

    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class RunMetrics(ContractModel):
    """Counters of one run, for telemetry and limits."""

    model_calls: int = Field(default=0, ge=0, description="Model calls made.")
    tool_calls: int = Field(default=0, ge=0, description="Tool and knowledge calls made.")
    duration_ms: int = Field(default=0, ge=0, description="From start to end, in milliseconds.")


class RunCompleted(Message):
    """The end of a run, whatever the outcome; memory learns from it."""

    ce_type: ClassVar[str] = "mindstream.runs.completed"

    run_id: Id = Field(description="The run.")
    session_id: Id = Field(description="Session of the run; the Kafka key.")
    agent_id: AgentRef = Field(description="Agent that ran (with the version used).")
    user_id: Id = Field(description="User of the run, so memory can learn about them.")
    parent_run_id: Id | None = Field(
        default=None, description="For a delegated run: the parent waiting for it."
    )
    status: RunStatus = Field(description="completed, failed or cancelled.")
    output: LongText | None = Field(default=None, description="Final answer text.")
    structured_output: JsonDict | None = Field(
        default=None, description="Final answer as JSON, when the agent has an output_schema."
    )
    messages: list[ChatMessage] = Field(
        default_factory=list,
        max_length=500,
        description="Turns of this run, starting with the user's input.",
    )
    usage: Usage = Field(default_factory=Usage, description="Tokens spent by the run.")
    metrics: RunMetrics = Field(default_factory=RunMetrics, description="Counters of the run.")
    error: ShortText | None = Field(
        default=None, description="Why the run failed or was cancelled."
    )
    completed_at: UtcDatetime = Field(description="When the run ended.")

    @model_validator(mode="after")
    def _error_iff_not_completed(self) -> RunCompleted:
        if (self.status is RunStatus.COMPLETED) != (self.error is None):
            raise ValueError("error is set exactly when status is not completed")
        return self


class RunCommandKind(StrEnum):
    """What an operator asks of a run."""

    CANCEL = "cancel"
    APPROVE = "approve"
    REJECT = "reject"


class RunCommand(Message):
    """An operator's instruction to a running run."""

    ce_type: ClassVar[str] = "mindstream.runs.command"

    command_id: Id = Field(description="Idempotency key of the command.")
    run_id: Id = Field(description="Run to act on.")
    session_id: Id = Field(description="Session of the run; the Kafka key.")
    command: RunCommandKind = Field(description="cancel, approve or reject.")
    actor: Actor = Field(description="Who issued the command.")
    reason: ShortText | None = Field(default=None, description="Why, for the audit trail.")
    call_id: Id | None = Field(
        default=None,
        description="For approve/reject: the tool call decided; unset means the pending one.",
    )
    issued_at: UtcDatetime = Field(
        default_factory=lambda: datetime.now(UTC),
        description="When the command was issued; defaults to when the message was built.",
    )

    @model_validator(mode="after")
    def _call_only_for_approvals(self) -> RunCommand:
        if self.command is RunCommandKind.CANCEL and self.call_id is not None:
            raise ValueError("call_id is only for approve and reject")
        return self
