"""Workflows: durable multi-step processes across agents, as step graphs.

A :class:`WorkflowDefinition` is a flat list of named steps joined by edges
(``next``, a condition's ``then``/``otherwise``, a router's ``routes``), with
two kinds of nested *scope*: each branch of a ``parallel`` step and the
``body`` of a ``loop``. A scope runs one path of steps from its first step
until a step with no successor; then the enclosing step goes on (a parallel
step when every branch has ended, a loop when its ``until`` check holds or
``max_iterations`` is reached), and the end of the top scope ends the
workflow. Every step belongs to exactly one scope, edges never leave it, and
the only way back is a loop: the validator refuses cycles, unreachable
steps, unknown references and steps reachable from two scopes, naming them.

Definitions live on the compacted ``mindstream.workflows.v1`` topic keyed by
id (the newest version of each workflow). A workflow run is started by a
:class:`WorkflowRequested` (``workflow_run_id`` is the idempotency key),
steered by :class:`WorkflowCommand` and reported as :class:`WorkflowEvent`.

Why a topic of its own for workflow events, and not new ``RunEventKind``
values: adding enum values passes the compatibility checker (BACKWARD: the
new schema accepts everything the old one did), but a reader built on the
old model forbids unknown kinds and would dead-letter every workflow event
on ``mindstream.runs.events.v1``. A separate topic leaves every existing
reader of run events untouched and keys workflow events by workflow run, so
one run's events stay in order on one partition.

Templates (in ``input``, tool ``arguments``, ``message``, ``output`` and
checks' ``value``): ``{{input}}`` (the workflow input), ``{{steps.ID.output}}``
(the newest output of step ID), ``{{iteration}}`` (the innermost loop's
iteration, from 1) and ``{{workflow_run_id}}``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from enum import StrEnum
from typing import ClassVar

from pydantic import Field, field_validator, model_validator

from schemas.base import (
    AgentId,
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
from schemas.common import Actor

__all__ = [
    "STEP_REF",
    "TERMINAL_KINDS",
    "Check",
    "RetrySpec",
    "StepType",
    "WorkflowCommand",
    "WorkflowCommandKind",
    "WorkflowDefinition",
    "WorkflowEvent",
    "WorkflowEventKind",
    "WorkflowRequested",
    "WorkflowStep",
    "agent_refs",
    "graph_problems",
    "step_refs",
]

STEP_REF = re.compile(r"\{\{\s*steps\.([a-z][a-z0-9_-]{0,63})\.output\s*\}\}")
"""A template reference to a step's output."""


class StepType(StrEnum):
    """What a step does."""

    AGENT = "agent"
    TOOL = "tool"
    PARALLEL = "parallel"
    CONDITION = "condition"
    LOOP = "loop"
    ROUTER = "router"
    APPROVAL = "approval"


class Check(ContractModel):
    """A test on a value: equals, regex, a JSON path, or a small agent's yes/no.

    ``json_path`` (``$.a.b[0]``) first extracts from ``value`` parsed as JSON;
    alone it tests that the extracted value is truthy. ``agent`` asks that
    agent ``question`` (default: ``value``) and holds when it answers yes.
    """

    value: Text = Field(default="", description="Template of the value tested.")
    equals: ShortText | None = Field(default=None, description="Holds when the value equals it.")
    regex: ShortText | None = Field(default=None, description="Holds when it matches (search).")
    json_path: ShortText | None = Field(
        default=None, pattern=r"^\$(\.[A-Za-z0-9_-]+|\[[0-9]+\])*$",
        description="Extract from the value (as JSON) before testing, e.g. $.verdict.",
    )
    agent: AgentRef | None = Field(default=None, description="Agent answering yes or no.")
    question: Text | None = Field(
        default=None, description="Template asked to the agent (default: the value)."
    )
    negate: bool = Field(default=False, description="Hold when the test does not.")

    @model_validator(mode="after")
    def _one_test(self) -> Check:
        tests = [t for t in (self.equals, self.regex, self.agent) if t is not None]
        if len(tests) > 1:
            raise ValueError("a check takes one of equals, regex or agent")
        if not tests and self.json_path is None:
            raise ValueError("a check needs equals, regex, json_path or agent")
        if self.agent is not None and self.json_path is not None:
            raise ValueError("an agent check takes no json_path")
        if not self.value and not (self.agent and self.question):
            raise ValueError("a check needs a value to test (or an agent's question)")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"invalid regex {self.regex!r}: {exc}") from None
        return self


class RetrySpec(ContractModel):
    """How often a failed agent or tool step is tried again before the workflow fails."""

    max_attempts: int = Field(default=1, ge=1, le=10, description="Tries in all, 1 = no retry.")


_TYPE_FIELDS: dict[StepType, frozenset[str]] = {
    StepType.AGENT: frozenset({"agent", "input", "retry", "next"}),
    StepType.TOOL: frozenset({"tool", "arguments", "run_as", "retry", "next"}),
    StepType.PARALLEL: frozenset({"branches", "next"}),
    StepType.CONDITION: frozenset({"check", "then", "otherwise"}),
    StepType.LOOP: frozenset({"body", "until", "max_iterations", "next"}),
    StepType.ROUTER: frozenset({"agent", "input", "routes", "default"}),
    StepType.APPROVAL: frozenset({"message", "next"}),
}
_REQUIRED: dict[StepType, tuple[str, ...]] = {
    StepType.AGENT: ("agent",),
    StepType.TOOL: ("tool",),
    StepType.PARALLEL: ("branches",),
    StepType.CONDITION: ("check", "then"),
    StepType.LOOP: ("body",),
    StepType.ROUTER: ("agent", "routes"),
    StepType.APPROVAL: (),
}
_COMMON = frozenset({"id", "type", "description"})


class WorkflowStep(ContractModel):
    """One step of a workflow; which fields apply depends on ``type``."""

    id: Label = Field(description="Name of the step, unique in the workflow.")
    type: StepType = Field(description="agent, tool, parallel, condition, loop, router, approval.")
    description: ShortText = Field(default="", description="What the step is for.")
    next: Label | None = Field(default=None, description="Step after this one; unset ends the scope.")
    agent: AgentRef | None = Field(default=None, description="Agent run (agent) or asked (router).")
    input: Text | None = Field(
        default=None, description="Template of the agent's input (default '{{input}}')."
    )
    tool: ToolName | None = Field(default=None, description="Tool to call (tool step).")
    arguments: JsonDict = Field(
        default_factory=dict, description="Tool arguments; string values are templates."
    )
    run_as: AgentRef | None = Field(
        default=None, description="Agent whose allowlist the tool call runs under."
    )
    retry: RetrySpec = Field(default_factory=RetrySpec, description="Retries of a failed step.")
    branches: list[Label] = Field(
        default_factory=list, max_length=32, description="First step of each parallel branch."
    )
    check: Check | None = Field(default=None, description="The condition's test.")
    then: Label | None = Field(default=None, description="Next step when the check holds.")
    otherwise: Label | None = Field(
        default=None, description="Next step when it does not; unset ends the scope."
    )
    body: Label | None = Field(default=None, description="First step of the loop's body.")
    until: Check | None = Field(
        default=None, description="Ends the loop when it holds after an iteration."
    )
    max_iterations: int = Field(default=10, ge=1, le=100, description="Most loop iterations.")
    routes: dict[Label, Label] = Field(
        default_factory=dict, max_length=32, description="Router: answer label -> next step."
    )
    default: Label | None = Field(
        default=None, description="Router: next step when the answer matches no label."
    )
    message: ShortText | None = Field(
        default=None, description="Approval: template of what the operator is asked."
    )

    @model_validator(mode="after")
    def _fields_fit_type(self) -> WorkflowStep:
        allowed = _TYPE_FIELDS[self.type] | _COMMON
        # Judged by value, not by fields_set: a decoded message carries every field.
        given = {name for name, info in type(self).model_fields.items()
                 if name not in allowed and getattr(self, name) != info.get_default(
                     call_default_factory=True)}
        if given:
            raise ValueError(
                f"step '{self.id}' ({self.type.value}) does not take {', '.join(sorted(given))}"
            )
        missing = [name for name in _REQUIRED[self.type] if not getattr(self, name)]
        if missing:
            raise ValueError(f"step '{self.id}' ({self.type.value}) needs {', '.join(missing)}")
        return self

    def successors(self) -> list[str]:
        """Steps this one may hand over to, in its own scope."""
        found = [self.next, self.then, self.otherwise, *self.routes.values(), self.default]
        return [s for s in found if s is not None]

    def children(self) -> list[str]:
        """First steps of the scopes nested in this one (parallel branches, loop body)."""
        return [*self.branches, *([self.body] if self.body else [])]

    def templates(self) -> Iterator[str]:
        for text in (self.input, self.message):
            if text:
                yield text
        for check in (self.check, self.until):
            if check is not None:
                yield check.value
                if check.question:
                    yield check.question
        yield from _strings(self.arguments)


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def step_refs(text: str) -> list[str]:
    """Step ids a template refers to with ``{{steps.ID.output}}``."""
    return STEP_REF.findall(text)


class WorkflowDefinition(Message):
    """A workflow: its steps as a graph, versioned like agents."""

    ce_type: ClassVar[str] = "mindstream.workflows.definition"

    id: AgentId = Field(description="Stable id of the workflow; the Kafka key.")
    version: int = Field(ge=1, description="Increases by one with every change.")
    description: ShortText = Field(default="", description="What the workflow does.")
    start: Label | None = Field(default=None, description="First step (default: the first listed).")
    steps: list[WorkflowStep] = Field(min_length=1, max_length=200, description="The steps.")
    output: Text | None = Field(
        default=None, description="Template of the result (default: the last step's output)."
    )
    run_as: AgentRef | None = Field(
        default=None, description="Default agent whose allowlist tool steps run under."
    )
    deadline_seconds: int = Field(
        default=3600, ge=1, le=7 * 86_400, description="Wall time a run may take, waits included."
    )
    updated_at: UtcDatetime | None = Field(default=None, description="When this version was made.")

    @field_validator("steps")
    @classmethod
    def _unique_ids(cls, steps: list[WorkflowStep]) -> list[WorkflowStep]:
        seen: set[str] = set()
        for step in steps:
            if step.id in seen:
                raise ValueError(f"duplicate step id '{step.id}'")
            seen.add(step.id)
        return steps

    @model_validator(mode="after")
    def _a_sound_graph(self) -> WorkflowDefinition:
        problems = graph_problems(self)
        if problems:
            raise ValueError("; ".join(problems[:5]))
        return self

    @property
    def first(self) -> str:
        return self.start or self.steps[0].id

    def step(self, step_id: str) -> WorkflowStep:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(f"workflow '{self.id}' has no step '{step_id}'")

    def ref(self) -> str:
        return f"{self.id}@{self.version}"


def agent_refs(definition: WorkflowDefinition) -> list[tuple[str, str]]:
    """(step id, agent ref) of every agent the workflow uses, for checks at apply time."""
    found: list[tuple[str, str]] = []
    for step in definition.steps:
        for ref in (step.agent, step.run_as):
            if ref:
                found.append((step.id, ref))
        if step.type is StepType.TOOL and step.run_as is None and definition.run_as:
            found.append((step.id, definition.run_as))
        for check in (step.check, step.until):
            if check is not None and check.agent:
                found.append((step.id, check.agent))
    return found


def graph_problems(definition: WorkflowDefinition) -> list[str]:
    """Everything wrong with the shape of the graph, each naming its steps."""
    by_id = {s.id: s for s in definition.steps}
    return _reference_problems(definition, by_id) or _scope_problems(definition, by_id)


def _reference_problems(definition: WorkflowDefinition, by_id: dict[str, WorkflowStep]
                        ) -> list[str]:
    problems: list[str] = []
    for step in definition.steps:
        for target in [*step.successors(), *step.children()]:
            if target not in by_id:
                problems.append(f"step '{step.id}' refers to unknown step '{target}'")
        for text in step.templates():
            for ref in step_refs(text):
                if ref not in by_id:
                    problems.append(f"step '{step.id}' uses the output of unknown step '{ref}'")
        if step.type is StepType.TOOL and step.run_as is None and definition.run_as is None:
            problems.append(f"tool step '{step.id}' needs run_as (or the workflow's run_as)")
    for ref in step_refs(definition.output or ""):
        if ref not in by_id:
            problems.append(f"output uses the output of unknown step '{ref}'")
    if definition.start is not None and definition.start not in by_id:
        problems.append(f"start refers to unknown step '{definition.start}'")
    return problems


def _scope_problems(definition: WorkflowDefinition, by_id: dict[str, WorkflowStep]
                    ) -> list[str]:
    """Every step in exactly one scope, no cycles inside a scope, nothing unreachable."""
    problems: list[str] = []
    scope_of: dict[str, str] = {}
    pending = [(definition.first, "the workflow")]
    while pending:
        first, scope = pending.pop()
        members = _scope_members(first, by_id)
        problems += _cycles(members, by_id)
        for member in members:
            if member in scope_of and scope_of[member] != scope:
                problems.append(
                    f"step '{member}' is reachable from {scope_of[member]} and from {scope}"
                )
                continue
            if member in scope_of:
                continue
            scope_of[member] = scope
            step = by_id[member]
            for branch in step.branches:
                pending.append((branch, f"branch '{branch}' of '{member}'"))
            if step.body:
                pending.append((step.body, f"the body of loop '{member}'"))
    unreachable = [s.id for s in definition.steps if s.id not in scope_of]
    if unreachable:
        problems.append(f"unreachable step(s): {', '.join(unreachable)}")
    return problems


def _scope_members(first: str, by_id: dict[str, WorkflowStep]) -> list[str]:
    seen: list[str] = []
    stack = [first]
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.append(current)
        stack.extend(by_id[current].successors())
    return seen


def _cycles(members: list[str], by_id: dict[str, WorkflowStep]) -> list[str]:
    """Cycles among a scope's edges (a loop step is the only way to repeat)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []
    found: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in by_id[node].successors():
            if state.get(nxt) == 1:
                cycle = [*path[path.index(nxt):], nxt]
                found.append(f"cycle outside a loop: {' -> '.join(cycle)}")
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for member in members:
        if member not in state:
            visit(member)
    return found


class WorkflowRequested(Message):
    """Start a workflow run; ``workflow_run_id`` is the idempotency key."""

    ce_type: ClassVar[str] = "mindstream.workflows.requested"

    workflow_run_id: Id = Field(description="Chosen by the client; a repeat is the same run.")
    workflow_id: AgentRef = Field(description="Workflow to run, optionally pinned: 'review@2'.")
    input: Text = Field(min_length=1, description="The workflow's input, as {{input}}.")
    user_id: Id = Field(description="User on whose behalf the steps run.")
    session_id: Id | None = Field(
        default=None, description="Base of the steps' sessions (default: the workflow run id)."
    )
    reply_topic: TopicName | None = Field(
        default=None, description="Extra topic to receive the final WorkflowEvent, if set."
    )
    metadata: Metadata = Field(default_factory=dict, description="Client labels, echoed back.")
    requested_at: UtcDatetime = Field(
        default_factory=lambda: datetime.now(UTC), description="When the client asked."
    )


class WorkflowCommandKind(StrEnum):
    """What an operator asks of a workflow run."""

    CANCEL = "cancel"
    APPROVE = "approve"
    REJECT = "reject"


class WorkflowCommand(Message):
    """An operator's instruction to a workflow run."""

    ce_type: ClassVar[str] = "mindstream.workflows.command"

    command_id: Id = Field(description="Idempotency key of the command.")
    workflow_run_id: Id = Field(description="Workflow run to act on; the Kafka key.")
    command: WorkflowCommandKind = Field(description="cancel, approve or reject.")
    step: ShortText | None = Field(
        default=None, description="For approve/reject: the approval step (path or id)."
    )
    actor: Actor = Field(description="Who issued the command.")
    reason: ShortText | None = Field(default=None, description="Why, for the audit trail.")
    issued_at: UtcDatetime = Field(
        default_factory=lambda: datetime.now(UTC), description="When it was issued."
    )

    @model_validator(mode="after")
    def _step_only_for_approvals(self) -> WorkflowCommand:
        if self.command is WorkflowCommandKind.CANCEL and self.step is not None:
            raise ValueError("step is only for approve and reject")
        return self


class WorkflowEventKind(StrEnum):
    """What happened in a workflow run."""

    STARTED = "workflow.started"
    STEP_STARTED = "step.started"
    STEP_RETRYING = "step.retrying"
    STEP_COMPLETED = "step.completed"
    STEP_FAILED = "step.failed"
    AWAITING_APPROVAL = "workflow.awaiting_approval"
    RESUMED = "workflow.resumed"
    COMPLETED = "workflow.completed"
    FAILED = "workflow.failed"
    CANCELLED = "workflow.cancelled"


TERMINAL_KINDS = frozenset(
    {WorkflowEventKind.COMPLETED, WorkflowEventKind.FAILED, WorkflowEventKind.CANCELLED}
)
_STEP_KINDS = frozenset(
    {
        WorkflowEventKind.STEP_STARTED,
        WorkflowEventKind.STEP_RETRYING,
        WorkflowEventKind.STEP_COMPLETED,
        WorkflowEventKind.STEP_FAILED,
        WorkflowEventKind.AWAITING_APPROVAL,
    }
)
_REASONED = frozenset(
    {
        WorkflowEventKind.STEP_FAILED,
        WorkflowEventKind.STEP_RETRYING,
        WorkflowEventKind.FAILED,
        WorkflowEventKind.CANCELLED,
    }
)


class WorkflowEvent(Message):
    """A step of a workflow run; ``seq`` orders a run's events and exposes gaps."""

    ce_type: ClassVar[str] = "mindstream.workflows.event"

    workflow_run_id: Id = Field(description="Workflow run; the Kafka key.")
    workflow_id: AgentRef = Field(description="Workflow with its version: 'review@2'.")
    seq: int = Field(ge=0, description="Position of the event in its run, from 0.")
    kind: WorkflowEventKind = Field(description="What happened.")
    at: UtcDatetime = Field(description="When it happened.")
    step: ShortText | None = Field(
        default=None, description="Step instance: its id, inside loops 'loop.2/step'."
    )
    step_type: StepType | None = Field(default=None, description="Type of the step.")
    run_id: Id | None = Field(default=None, description="Agent run or tool call of the step.")
    attempt: int | None = Field(default=None, ge=1, description="Try of the step, from 1.")
    output: LongText | None = Field(
        default=None, description="Output of a completed step or of the workflow."
    )
    reason: ShortText | None = Field(default=None, description="Why (failures, cancel, retry).")
    data: JsonDict = Field(default_factory=dict, description="Small extra detail for the kind.")

    @model_validator(mode="after")
    def _kind_has_its_fields(self) -> WorkflowEvent:
        if self.kind in _STEP_KINDS and self.step is None:
            raise ValueError(f"{self.kind.value} needs step")
        if self.kind in _REASONED and self.reason is None:
            raise ValueError(f"{self.kind.value} needs reason")
        return self

    @property
    def terminal(self) -> bool:
        return self.kind in TERMINAL_KINDS
