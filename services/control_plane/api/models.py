"""Request and response bodies of the management API.

Agent bodies reuse the contract's own fields (:class:`AgentSpec` is
:class:`~schemas.agents.AgentDefinition` without the fields the control
plane owns: version, paused, updated_at), so the API cannot drift from the
message it publishes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from schemas.agents import AgentDefinition
from schemas.base import AgentRef, ContractModel, Id, Metadata, Name, ShortText, Text
from schemas.knowledge import DocumentText
from schemas.runs import RunPriority
from services.control_plane.tokens import Scope

_OWNED = {"version", "paused", "updated_at", "rollout"}  # rollout: `mindstream canary`

AgentSpec: type[ContractModel] = create_model(  # type: ignore[call-overload]
    "AgentSpec",
    __base__=ContractModel,
    __doc__="An agent definition as an operator writes it; the control plane sets the version.",
    **{name: (f.annotation, f) for name, f in AgentDefinition.model_fields.items()
       if name not in _OWNED},
)


class _Out(BaseModel):
    model_config = ConfigDict(extra="ignore")


class AgentOut(_Out):
    id: str
    version: int
    paused: bool
    updated_at: datetime | None = None
    definition: dict[str, Any]


class PauseBody(ContractModel):
    reason: ShortText | None = Field(default=None, description="Why, for the audit trail.")


class RunSubmit(ContractModel):
    agent_id: AgentRef = Field(description="Agent to run, optionally pinned: 'support@3'.")
    input: Text = Field(min_length=1, description="The user's message.")
    user_id: Id = Field(description="User on whose behalf the run happens.")
    session_id: Id | None = Field(default=None, description="Session; a new one if unset.")
    run_id: Id | None = Field(default=None, description="Idempotency key; a new one if unset.")
    priority: RunPriority = RunPriority.NORMAL
    metadata: Metadata = Field(default_factory=dict)


class RunSubmitted(_Out):
    run_id: str
    session_id: str
    status: str


class CommandBody(ContractModel):
    reason: ShortText | None = Field(default=None, description="Why, for the audit trail.")
    call_id: Id | None = Field(default=None, description="Tool call decided (approve/reject).")


class CommandIssued(_Out):
    command_id: str
    run_id: str
    command: str


class RunOut(_Out):
    id: str
    session_id: str
    agent_id: str
    status: str
    user_id: str | None = None
    input: str | None = None
    output: str | None = None
    error: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    last_seq: int = -1
    usage: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None


class TimelineStep(_Out):
    type: str
    name: str | None = None
    call_id: str | None = None
    started_at: datetime
    ended_at: datetime | None = None
    duration_ms: int | None = None
    ok: bool | None = None
    tokens: int | None = None


class RunDetail(RunOut):
    events: list[dict[str, Any]]
    timeline: list[TimelineStep]


class WorkflowRunSubmit(ContractModel):
    """What :class:`~schemas.workflows.WorkflowRequested` needs; the rest is defaulted."""

    workflow_id: AgentRef = Field(description="Workflow to run, optionally pinned: 'review@2'.")
    version: int | None = Field(default=None, ge=1, le=999_999_999,
                                description="Pin a version (or pin in workflow_id, not both).")
    input: Text = Field(min_length=1, description="The workflow's input, as {{input}}.")
    user_id: Id = Field(description="User on whose behalf the steps run.")
    session_id: Id | None = Field(
        default=None, description="Base of the steps' sessions (default: the workflow run id).")
    workflow_run_id: Id | None = Field(default=None,
                                       description="Idempotency key; a new one if unset.")
    metadata: Metadata = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_way_to_pin(self) -> WorkflowRunSubmit:
        if self.version is not None and "@" in self.workflow_id:
            raise ValueError("give the version in workflow_id ('review@2') or as version, "
                             "not both")
        return self

    def ref(self) -> str:
        return self.workflow_id if self.version is None else f"{self.workflow_id}@{self.version}"


class WorkflowRunSubmitted(_Out):
    workflow_run_id: str
    workflow_id: str = Field(description="As requested: pinned if a version was given.")
    status: str


class WorkflowCancelBody(ContractModel):
    reason: ShortText | None = Field(default=None, description="Why, for the audit trail.")


class WorkflowApprovalBody(WorkflowCancelBody):
    step: ShortText | None = Field(
        default=None, description="Approval step (id, or path in loops: 'refine.2/check'); "
                                  "default: the one waiting.")


class WorkflowCommandIssued(_Out):
    command_id: str
    workflow_run_id: str
    command: str


class WorkflowRunOut(_Out):
    id: str = Field(description="Workflow run id.")
    workflow_id: str = Field(description="Workflow, without its version.")
    workflow_version: int | None = Field(default=None, description="None if it never started.")
    workflow_ref: str | None = None
    status: str = Field(description="requested (submitted here, no event yet), running, "
                                    "awaiting_approval, completed, failed, cancelled.")
    user_id: str | None = Field(default=None, description="Known for runs submitted here.")
    input: str | None = Field(default=None, description="Known for runs submitted here.")
    created_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    updated_at: datetime | None = None
    duration_ms: int | None = None
    steps_total: int | None = None
    output: str | None = None
    error: str | None = None
    last_seq: int = -1


class WorkflowNodeOut(_Out):
    id: str = Field(description="Step id.")
    kind: str | None = Field(default=None, description="agent, tool, parallel, condition, ...")
    description: str = ""
    parent: str | None = Field(default=None, description="Parallel or loop step it is inside.")
    state: str = Field(description="pending, running, retrying, awaiting_approval, completed, "
                                   "failed, cancelled or skipped.")
    path: str | None = Field(default=None, description="Instance shown: 'loop.2/step' in loops.")
    iteration: int | None = Field(default=None, description="Innermost loop iteration shown.")
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_ms: int | None = Field(default=None, description="Once the step has ended.")
    elapsed_ms: int | None = Field(default=None, description="While it is open.")
    attempts: int = 0
    run_id: str | None = Field(default=None, description="Agent run or tool call of the step.")
    error: str | None = None
    output: str | None = Field(default=None, description="Output, clipped to 500 characters.")
    next: str | None = Field(default=None, description="Condition/router: the step chosen.")
    loop_iterations: int | None = None
    message: str | None = Field(default=None, description="Approval: what was asked.")
    approved_by: str | None = None


class WorkflowEdgeOut(_Out):
    source: str
    target: str
    kind: str = Field(description="next, then, otherwise, route, default, branch, join, body, "
                                  "exit or repeat.")
    label: str | None = None


class WorkflowRunDetail(WorkflowRunOut):
    start: str | None = Field(default=None, description="First step.")
    graph_known: bool = Field(description="False if the control plane never saw the definition.")
    nodes: list[WorkflowNodeOut]
    edges: list[WorkflowEdgeOut]


class SessionOut(_Out):
    id: str
    first_at: datetime | None = None
    last_at: datetime | None = None
    agent_ids: list[str] = Field(default_factory=list)
    runs: int = 0


class MessageOut(_Out):
    run_id: str
    role: str
    content: str | None = None
    at: datetime | None = None


class AuditRecordOut(_Out):
    event_id: str
    chain: str
    seq: int
    hash: str
    prev_hash: str
    recorded_at: datetime | None = None
    event: dict[str, Any]


class BrokenOut(_Out):
    chain: str
    seq: int
    event_id: str | None = None
    problem: str


class VerifyOut(_Out):
    ok: bool
    checked: int
    first_broken: BrokenOut | None = None


class TokenCreate(ContractModel):
    name: Name = Field(description="What the token is for, e.g. 'grafana' or 'alice'.")
    scope: Scope = Field(description="viewer, operator or admin.")


class TokenOut(_Out):
    id: str
    name: str
    scope: str
    created_at: datetime | None = None
    created_by: str | None = None
    revoked_at: datetime | None = None
    revoked_by: str | None = None


class TokenCreated(TokenOut):
    token: str = Field(description="The token itself; shown only in this answer.")


class KillSwitchBody(ContractModel):
    enabled: bool
    reason: ShortText | None = None


class KillSwitchOut(_Out):
    enabled: bool
    reason: str | None = None
    changed_by: str | None = None
    changed_at: datetime | None = None


class KnowledgeUpload(ContractModel):
    document_id: Id | None = Field(default=None, description="Stable id; a new one if unset.")
    source: ShortText = Field(min_length=1, description="Where it came from (path or URL).")
    title: ShortText | None = None
    text: DocumentText = Field(min_length=1)
    metadata: Metadata = Field(default_factory=dict)


class KnowledgeAccepted(_Out):
    document_id: str
    deleted: bool


class WhoAmI(_Out):
    token_id: str
    name: str
    scope: str
