"""The workflow interpreter, as pure code: state and an input in, new state and messages out.

Nothing here waits. :meth:`Engine.advance` walks the graph from the first
step every time something happened, starting each step it reaches that has
no instance yet and stopping at steps still in flight: an agent step
dispatches a ``RunRequested`` and returns; the step is finished later by
:meth:`Engine.run_finished` when its ``RunCompleted`` arrives (or
``ToolResult``, or an operator's approval), which walks the graph again.
Walking again is cheap (a graph has at most 200 steps) and makes the
interpreter idempotent: a repeated input finds nothing new to start.

Every message gets its id here: ``deterministic_id(workflow_run_id, "step",
N, i)`` for the i-th message of the N-th persisted step. Agent runs and tool
calls get ``wfs-`` + ``deterministic_id(workflow_run_id, "run", path,
attempt)``, so a step re-dispatched after a crash is the same run, which
memory and reasoning already treat as a repeat.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from schemas.audit import AuditEvent, AuditOutcome, AuditTarget
from schemas.base import Message
from schemas.common import Actor, ActorKind
from schemas.envelope import deterministic_id
from schemas.runs import RunCommand, RunCommandKind, RunRequested
from schemas.tools import ToolCall
from schemas.topics import AUDIT, RUNS_COMMANDS, RUNS_REQUESTED, TOOLS_CALLS, WORKFLOWS_EVENTS, TopicSpec
from schemas.workflows import (
    Check,
    StepType,
    WorkflowDefinition,
    WorkflowEvent,
    WorkflowEventKind,
    WorkflowStep,
)
from services.workflows.state import StepRun, StepStatus, WorkflowState, WorkflowStatus
from services.workflows.templates import Scope, evaluate, parse_yes, render, render_value
from shared.audit import digest

__all__ = ["RUN_ID_PREFIX", "SERVICE_ACTOR", "Engine", "Outgoing", "clip", "step_session"]

RUN_ID_PREFIX = "wfs-"
SERVICE_ACTOR = Actor(kind=ActorKind.SERVICE, id="workflows")
_EVENT_OUTPUT = 64_000
_DISPATCHED = ("agent", "router", "check", "tool")


def clip(text: str | None, limit: int = 1000) -> str | None:
    if text is None:
        return None
    return text if len(text) <= limit else text[: limit - 1] + "…"


def step_session(base: str, step_id: str) -> str:
    """Each step talks in a session of its own (its history is its own), traceable to the run."""
    candidate = f"{base}:{step_id}"
    if len(candidate) <= 128:
        return candidate
    return f"{base[:80]}:{hashlib.sha256(candidate.encode()).hexdigest()[:40]}"


@dataclass(frozen=True)
class Outgoing:
    """A message a persisted step must publish, with its final id."""

    id: str
    spec: TopicSpec
    message: Message
    physical_topic: str | None = None
    best_effort: bool = False


@dataclass(frozen=True)
class _Result:
    status: Literal["done", "running", "failed"]
    output: str | None = None
    reason: str | None = None


_RUNNING = _Result("running")


class Engine:
    """One step of one workflow run: apply an input, walk the graph, collect what to send."""

    def __init__(self, definition: WorkflowDefinition | None, state: WorkflowState,
                 now: datetime) -> None:
        self._definition = definition
        self.s = state.model_copy(deep=True)
        self.now = now
        self.number = state.step + 1
        self.out: list[Outgoing] = []
        self.changed = False

    @property
    def d(self) -> WorkflowDefinition:
        if self._definition is None:
            raise RuntimeError(f"workflow run {self.s.workflow_run_id} has no definition")
        return self._definition

    # -- output -------------------------------------------------------------------------

    def _id(self) -> str:
        return deterministic_id(self.s.workflow_run_id, "step", str(self.number), str(len(self.out)))

    def _send(self, spec: TopicSpec, message: Message, *, physical_topic: str | None = None,
              best_effort: bool = False, message_id: str | None = None) -> None:
        self.out.append(Outgoing(message_id or self._id(), spec, message, physical_topic,
                                 best_effort))
        self.changed = True

    def _event(self, kind: WorkflowEventKind, inst: StepRun | None = None, *,
               output: str | None = None, reason: str | None = None,
               data: dict[str, Any] | None = None) -> WorkflowEvent:
        event = WorkflowEvent(
            workflow_run_id=self.s.workflow_run_id, workflow_id=self.s.ref, seq=self.s.seq,
            kind=kind, at=self.now, step=clip(inst.path) if inst else None,
            step_type=StepType(inst.type) if inst and inst.type != "check" else None,
            run_id=inst.run_id if inst else None, attempt=inst.attempt if inst else None,
            output=clip(output, _EVENT_OUTPUT), reason=clip(reason), data=data or {},
        )
        self.s.seq += 1
        self._send(WORKFLOWS_EVENTS, event)
        return event

    def _audit(self, action: str, *, outcome: AuditOutcome = AuditOutcome.SUCCESS,
               actor: Actor | None = None, reason: str | None = None,
               details: dict[str, Any] | None = None) -> None:
        event_id = self._id()
        self._send(AUDIT, AuditEvent(
            event_id=event_id, time=self.now, actor=actor or SERVICE_ACTOR, action=action,
            target=AuditTarget(kind="workflow_run", id=self.s.workflow_run_id), outcome=outcome,
            reason=clip(reason, 500), after_digest=digest({"status": self.s.status.value}),
            details={"workflow": self.s.ref, **(details or {})},
        ), message_id=event_id)

    def _scope(self, iteration: int) -> Scope:
        return Scope(input=self.s.input, outputs=self.s.latest_outputs(), iteration=iteration,
                     workflow_run_id=self.s.workflow_run_id)

    # -- inputs -------------------------------------------------------------------------

    def begin(self) -> WorkflowState:
        self.s.status = WorkflowStatus.RUNNING
        self._event(WorkflowEventKind.STARTED, data={
            "deadline": self.s.deadline.isoformat(), "steps": len(self.d.steps)})
        self._audit("workflow.started", details={"user_id": self.s.user_id})
        return self.advance()

    def refuse(self, reason: str) -> WorkflowState:
        """A request that cannot start (unknown workflow): a failed run, reported as such."""
        self._end(WorkflowStatus.FAILED, reason=reason)
        return self.s

    def run_finished(self, run_id: str, *, ok: bool, output: str | None,
                     error: str | None) -> WorkflowState:
        """An agent run or tool call of a step ended; absorbed if it is not awaited."""
        inst = next((i for i in self.s.steps.values()
                     if i.run_id == run_id and i.status is StepStatus.RUNNING), None)
        if self.s.terminal or inst is None:
            return self.s
        if not ok:
            self._failed_attempt(inst, error or "failed without a reason")
        elif inst.type == StepType.ROUTER.value:
            self._route(inst, output or "")
        else:
            self._finish(inst, output=output or "")
        return self.advance()

    def approve(self, step: str | None, actor: Actor, reason: str | None) -> WorkflowState:
        inst = self._awaiting(step)
        if self.s.terminal or inst is None:
            return self.s
        who = f"{actor.kind.value}:{actor.id}"
        self._audit("workflow.approved", actor=actor, reason=reason, details={"step": inst.path})
        self._event(WorkflowEventKind.RESUMED, inst, data={"approved_by": who})
        self._finish(inst, output=reason or "approved")
        return self.advance()

    def reject(self, step: str | None, actor: Actor, reason: str | None) -> WorkflowState:
        inst = self._awaiting(step)
        if self.s.terminal or inst is None:
            return self.s
        who = f"{actor.kind.value}:{actor.id}"
        why = f"approval '{inst.path}' rejected by {who}" + (f": {reason}" if reason else "")
        self._audit("workflow.rejected", actor=actor, outcome=AuditOutcome.REFUSED, reason=why,
                    details={"step": inst.path})
        self._finish(inst, error=why)
        return self.advance()

    def cancel(self, actor: Actor, reason: str | None) -> WorkflowState:
        if self.s.terminal:
            return self.s
        who = f"{actor.kind.value}:{actor.id}"
        self._end(WorkflowStatus.CANCELLED, reason=f"cancelled by {who}"
                  + (f": {reason}" if reason else ""), actor=actor)
        return self.s

    def expire(self) -> WorkflowState:
        if not self.s.terminal:
            self._end(WorkflowStatus.FAILED,
                      reason=f"deadline exceeded (deadline {self.s.deadline.isoformat()})")
        return self.s

    def _awaiting(self, step: str | None) -> StepRun | None:
        waiting = [i for i in self.s.steps.values() if i.status is StepStatus.AWAITING_APPROVAL]
        if step is None:
            return waiting[0] if waiting else None
        return next((i for i in waiting if step in (i.path, i.step_id)), None)

    # -- the walk -----------------------------------------------------------------------

    def advance(self) -> WorkflowState:
        if self.s.terminal:
            return self.s
        result = self._chain(self.d.first, "", 0)
        if result.status == "done":
            output = result.output
            if self.d.output:
                output = render(self.d.output, self._scope(0))
            self._end(WorkflowStatus.COMPLETED, output=output or "")
        elif result.status == "failed":
            self._end(WorkflowStatus.FAILED, reason=result.reason or "a step failed")
        return self.s

    def _chain(self, first: str, prefix: str, iteration: int) -> _Result:
        current: str | None = first
        output: str | None = None
        while current is not None:
            step = self.d.step(current)
            result = self._visit(step, prefix, iteration)
            if result.status != "done":
                return result
            output = result.output
            inst = self.s.steps[prefix + step.id]
            chooses = step.type in (StepType.CONDITION, StepType.ROUTER)
            current = (inst.branch or None) if chooses else step.next
        return _Result("done", output)

    def _visit(self, step: WorkflowStep, prefix: str, iteration: int) -> _Result:  # noqa: PLR0911 - one exit per status
        path = prefix + step.id
        inst = self.s.steps.get(path)
        if inst is None:
            inst = self._start(step, path, iteration)
        if inst.status is StepStatus.COMPLETED:
            return _Result("done", inst.output)
        if inst.status in (StepStatus.FAILED, StepStatus.CANCELLED):
            return _Result("failed", reason=f"step '{path}' failed: {inst.error}")
        if inst.status is StepStatus.AWAITING_APPROVAL:
            return _RUNNING
        if step.type is StepType.PARALLEL:
            return self._parallel(step, inst, prefix, iteration)
        if step.type is StepType.LOOP:
            return self._loop(step, inst, prefix)
        if step.type is StepType.CONDITION:
            return self._condition(step, inst, iteration)
        return _RUNNING

    def _condition(self, step: WorkflowStep, inst: StepRun, iteration: int) -> _Result:
        assert step.check is not None
        held = self._check(step.check, f"{inst.path}#check", iteration)
        if held is None:
            return _RUNNING
        if isinstance(held, str):
            self._finish(inst, error=held)
            return _Result("failed", reason=f"step '{inst.path}' failed: {held}")
        self._finish(inst, output="true" if held else "false",
                     branch=(step.then if held else step.otherwise) or "")
        return _Result("done", inst.output)

    def _start(self, step: WorkflowStep, path: str, iteration: int) -> StepRun:
        inst = StepRun(path=path, step_id=step.id, type=step.type.value, started_at=self.now)
        self.s.steps[path] = inst
        scope = self._scope(iteration)
        if step.type is StepType.AGENT:
            assert step.agent is not None
            inst.agent, inst.request = step.agent, render(step.input or "{{input}}", scope)
        elif step.type is StepType.ROUTER:
            assert step.agent is not None
            labels = ", ".join(step.routes)
            text = render(step.input or "{{input}}", scope)
            inst.agent, inst.request = step.agent, f"{text}\n\nAnswer with one of: {labels}."
        elif step.type is StepType.TOOL:
            inst.agent = step.run_as or self.d.run_as
            inst.request = render_value(step.arguments, scope)
        elif step.type is StepType.APPROVAL:
            inst.status = StepStatus.AWAITING_APPROVAL
        data: dict[str, Any] = {"iteration": iteration} if iteration else {}
        if inst.type in _DISPATCHED:
            self._dispatch(inst)
        self._event(WorkflowEventKind.STEP_STARTED, inst, data=data)
        if step.type is StepType.APPROVAL:
            message = render(step.message or f"approve step '{step.id}'?", scope)
            self._event(WorkflowEventKind.AWAITING_APPROVAL, inst, data={"message": clip(message)})
        return inst

    def _dispatch(self, inst: StepRun) -> None:
        """Send the step's agent run or tool call (again, on a retry: a new attempt id)."""
        run_id = RUN_ID_PREFIX + deterministic_id(self.s.workflow_run_id, "run", inst.path,
                                                  str(inst.attempt))
        inst.run_id = run_id
        inst.session_id = step_session(self.s.session_id, inst.step_id)
        self.s.dispatched.append(run_id)
        assert inst.agent is not None
        if inst.type == StepType.TOOL.value:
            tool = self.d.step(inst.step_id).tool
            assert tool is not None
            self._send(TOOLS_CALLS, ToolCall(
                call_id=run_id, run_id=run_id, session_id=inst.session_id, agent_id=inst.agent,
                tool=tool, arguments=inst.request or {},
                deadline=self.s.deadline, attempt=inst.attempt,
            ))
            return
        text = str(inst.request or "").strip() or "(empty input)"
        self._send(RUNS_REQUESTED, RunRequested(
            run_id=run_id, agent_id=inst.agent, session_id=inst.session_id,
            user_id=self.s.user_id, input=text[:32_000], requested_at=self.now,
            metadata={"workflow_run_id": self.s.workflow_run_id, "workflow_id": self.s.ref,
                      "workflow_step": inst.path[:1024]},
        ))

    def _parallel(self, step: WorkflowStep, inst: StepRun, prefix: str,
                  iteration: int) -> _Result:
        results = {b: self._chain(b, prefix, iteration) for b in step.branches}
        failed = next(((b, r) for b, r in results.items() if r.status == "failed"), None)
        if failed is not None:
            why = f"branch '{failed[0]}' failed: {failed[1].reason}"
            self._finish(inst, error=why)
            return _Result("failed", reason=f"step '{inst.path}' failed: {why}")
        if all(r.status == "done" for r in results.values()):
            output = json.dumps({b: r.output for b, r in results.items()})
            self._finish(inst, output=output)
            return _Result("done", output)
        return _RUNNING

    def _loop(self, step: WorkflowStep, inst: StepRun, prefix: str) -> _Result:
        assert step.body is not None
        while True:
            i = inst.iteration
            result = self._chain(step.body, f"{prefix}{step.id}.{i}/", i)
            if result.status == "failed":
                self._finish(inst, error=f"iteration {i}: {result.reason}")
                return _Result("failed", reason=f"step '{inst.path}' failed: {inst.error}")
            if result.status == "running":
                return result
            held: bool | str | None = False
            if step.until is not None:
                held = self._check(step.until, f"{inst.path}#until.{i}", i)
                if held is None:
                    return _RUNNING
                if isinstance(held, str):
                    self._finish(inst, error=held)
                    return _Result("failed", reason=f"step '{inst.path}' failed: {held}")
            if held or i >= step.max_iterations:
                self._finish(inst, output=result.output or "",
                             data={"iterations": i, "condition_met": bool(held)})
                return _Result("done", inst.output)
            inst.iteration = i + 1

    def _check(self, check: Check, judge_path: str, iteration: int) -> bool | str | None:
        """True/False when known, None while a judge agent thinks, a reason if it failed."""
        scope = self._scope(iteration)
        if check.agent is None:
            return evaluate(check, render(check.value, scope))
        judge = self.s.steps.get(judge_path)
        if judge is None:
            owner = judge_path.split("#", 1)[0].rsplit("/", 1)[-1]
            question = render(check.question or check.value, scope)
            judge = StepRun(path=judge_path, step_id=owner.split(".", 1)[0], type="check",
                            agent=check.agent, request=f"{question}\n\nAnswer yes or no.",
                            started_at=self.now)
            self.s.steps[judge_path] = judge
            self._dispatch(judge)
            return None
        if judge.status is StepStatus.RUNNING:
            return None
        if judge.status is not StepStatus.COMPLETED:
            return f"check by '{check.agent}' failed: {judge.error}"
        return parse_yes(judge.output) != check.negate

    # -- finishing steps and the run ------------------------------------------------------

    def _finish(self, inst: StepRun, *, output: str | None = None, error: str | None = None,
                branch: str | None = None, data: dict[str, Any] | None = None) -> None:
        self.s.finished += 1
        inst.order, inst.finished_at = self.s.finished, self.now
        inst.branch = branch
        if error is None:
            inst.status, inst.output = StepStatus.COMPLETED, output
            if inst.type != "check":
                self._event(WorkflowEventKind.STEP_COMPLETED, inst, output=output, data={
                    **(data or {}), **({"next": branch} if branch is not None else {})})
        else:
            inst.status, inst.error = StepStatus.FAILED, clip(error)
            if inst.type != "check":
                self._event(WorkflowEventKind.STEP_FAILED, inst, reason=error, data=data)

    def _failed_attempt(self, inst: StepRun, error: str) -> None:
        step = self.d.step(inst.step_id)
        if inst.type != "check" and inst.attempt < step.retry.max_attempts:
            self._event(WorkflowEventKind.STEP_RETRYING, inst, reason=error,
                        data={"next_attempt": inst.attempt + 1})
            inst.attempt += 1
            self._dispatch(inst)
            return
        self._finish(inst, error=error)

    def _route(self, inst: StepRun, answer: str) -> None:
        step = self.d.step(inst.step_id)
        label = match_route(list(step.routes), answer)
        if label is not None:
            self._finish(inst, output=label, branch=step.routes[label])
        elif step.default is not None:
            self._finish(inst, output=answer.strip()[:200], branch=step.default)
        else:
            self._finish(inst, error=f"answer {clip(answer.strip(), 200)!r} matches no route "
                                     f"({', '.join(step.routes)})")

    def _end(self, status: WorkflowStatus, *, output: str | None = None,
             reason: str | None = None, actor: Actor | None = None) -> None:
        kind = {WorkflowStatus.COMPLETED: WorkflowEventKind.COMPLETED,
                WorkflowStatus.FAILED: WorkflowEventKind.FAILED,
                WorkflowStatus.CANCELLED: WorkflowEventKind.CANCELLED}[status]
        in_flight = [i for i in self.s.steps.values() if i.open]
        for inst in in_flight:
            inst.status, inst.finished_at = StepStatus.CANCELLED, self.now
            inst.error = inst.error or "workflow ended"
            if inst.type != StepType.TOOL.value and inst.run_id and inst.session_id:
                self._send(RUNS_COMMANDS, RunCommand(
                    command_id=deterministic_id(self.s.workflow_run_id, "cancel", inst.run_id),
                    run_id=inst.run_id, session_id=inst.session_id,
                    command=RunCommandKind.CANCEL, actor=SERVICE_ACTOR,
                    reason=clip(f"workflow {self.s.workflow_run_id} {status.value}"),
                    issued_at=self.now,
                ))
        self.s.status, self.s.output, self.s.failure_reason = status, output, clip(reason)
        duration = max(0, int((self.now - self.s.created_at).total_seconds() * 1000))
        event = self._event(kind, output=output, reason=reason,
                            data={"duration_ms": duration, "steps": len(self.s.steps)})
        if self.s.reply_topic:
            self._send(WORKFLOWS_EVENTS, event, physical_topic=self.s.reply_topic,
                       best_effort=True)
        outcome = (AuditOutcome.SUCCESS if status is WorkflowStatus.COMPLETED
                   else AuditOutcome.FAILED)
        self._audit(kind.value, outcome=outcome, actor=actor, reason=reason)


def match_route(labels: list[str], answer: str) -> str | None:
    """The label the classifier answered: exact first, else the first label it mentions."""
    text = answer.strip().lower()
    for label in labels:
        if text.strip(" .!\"'`") == label.lower():
            return label
    positions = [(text.find(label.lower()), label) for label in labels]
    found = sorted((pos, label) for pos, label in positions if pos >= 0)
    return found[0][1] if found else None
