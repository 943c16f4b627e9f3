"""What the workflows service does with each message: one persisted step per input.

Every handler has the shape of reasoning's (architecture rule 2):

1. load the workflow run; if its last step left an unpublished outbox (a crash
   between the write and the publish), publish it now with the stored ids;
2. apply the input through the pure :class:`~services.workflows.engine.Engine`;
   an input already applied changes nothing and writes nothing;
3. write the new state with the messages it implies in one versioned update,
   publish them, clear the outbox; only then does the consumer commit.

Parallel branches finish on different partitions (their runs live in their
own sessions), so two handlers may write one workflow run at once: the
``version`` check turns that into a conflict, retried here on fresh state.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from schemas.envelope import Envelope
from schemas.runs import RunCompleted, RunStatus
from schemas.tools import ToolResult
from schemas.topics import topic
from schemas.workflows import WorkflowCommand, WorkflowCommandKind, WorkflowRequested
from services.workflows.definitions import WorkflowBook
from services.workflows.engine import RUN_ID_PREFIX, Engine, Outgoing, clip
from services.workflows.errors import UnknownWorkflowRun
from services.workflows.state import WorkflowState
from services.workflows.store import OutboxItem, StoredRun, WorkflowRunStore
from shared.errors import ConflictError
from shared.kafka.consumer import Delivery
from shared.kafka.publisher import Publisher

__all__ = ["Orchestrator", "OrchestratorConfig", "is_step_completion", "is_step_result"]

log = logging.getLogger("mindstream.workflows")


def is_step_completion(msg: RunCompleted) -> bool:
    """Whether a run completion is a workflow step's (most completions are not ours)."""
    return msg.run_id.startswith(RUN_ID_PREFIX)


def is_step_result(msg: ToolResult) -> bool:
    """Whether a tool result answers a workflow step's call."""
    return msg.call_id.startswith(RUN_ID_PREFIX)

Step = Callable[[Engine], WorkflowState]


@dataclass(frozen=True)
class OrchestratorConfig:
    outbox_redrive_after_s: float = 10.0
    conflict_attempts: int = 20  # re-reads on a version conflict before the pipeline retries


def _items(out: list[Outgoing]) -> list[OutboxItem]:
    return [OutboxItem(id=o.id, topic=o.spec.name, body=o.message.model_dump_json(),
                       physical_topic=o.physical_topic, best_effort=o.best_effort) for o in out]


class Orchestrator:
    def __init__(self, *, store: WorkflowRunStore, publisher: Publisher, book: WorkflowBook,
                 config: OrchestratorConfig | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store, self.publisher, self.book = store, publisher, book
        self.config = config or OrchestratorConfig()
        self.clock = clock

    # -- persistence and publication --------------------------------------------------

    async def _publish(self, items: list[OutboxItem], caused_by: Envelope | None,
                       workflow_run_id: str) -> None:
        for item in items:
            spec = topic(item.topic)
            message = spec.message.model_validate_json(item.body)
            try:
                await self.publisher.publish(spec, message, caused_by=caused_by,
                                             message_id=item.id, correlation_id=workflow_run_id,
                                             physical_topic=item.physical_topic)
            except Exception:
                if not item.best_effort:
                    raise
                log.warning("could not publish to %s for workflow run %s", item.physical_topic,
                            workflow_run_id, exc_info=True)

    async def _load(self, workflow_run_id: str, caused_by: Envelope | None) -> StoredRun | None:
        stored = await self.store.get(workflow_run_id)
        if stored is not None and stored.outbox:
            await self._publish(stored.outbox, caused_by, workflow_run_id)
            await self.store.clear_outbox(workflow_run_id, stored.state.version)
            stored.outbox = []
        return stored

    async def _step(self, workflow_run_id: str, apply: Step, caused_by: Envelope | None) -> bool:
        """Load, apply, persist, publish; re-read and re-apply on a version conflict."""
        for _ in range(self.config.conflict_attempts):
            stored = await self._load(workflow_run_id, caused_by)
            if stored is None:
                raise UnknownWorkflowRun(workflow_run_id)
            engine = Engine(stored.definition, stored.state, self.clock())
            new = apply(engine)
            if not engine.changed:
                return False
            new.step, new.updated_at = engine.number, engine.now
            items = _items(engine.out)
            try:
                saved = await self.store.save(stored.state.version, new, items)
            except ConflictError:
                continue
            await self._publish(items, caused_by, workflow_run_id)
            await self.store.clear_outbox(workflow_run_id, saved.version)
            return True
        raise ConflictError(f"workflow run {workflow_run_id}: too many concurrent writers")

    # -- mindstream.workflows.requested ------------------------------------------------

    async def on_requested(self, delivery: Delivery[WorkflowRequested]) -> None:
        req, caused_by = delivery.message, delivery.envelope
        if await self._load(req.workflow_run_id, caused_by) is not None:
            return  # a repeat of the same workflow_run_id: the run exists
        definition = self.book.get(req.workflow_id)
        now = self.clock()
        deadline_s = definition.deadline_seconds if definition else 0
        state = WorkflowState(
            workflow_run_id=req.workflow_run_id,
            workflow_id=definition.id if definition else req.workflow_id.split("@", 1)[0],
            workflow_version=definition.version if definition else 0, input=req.input,
            user_id=req.user_id, session_id=req.session_id or f"wf-{req.workflow_run_id}"[:128],
            reply_topic=req.reply_topic, metadata=dict(req.metadata), created_at=now,
            updated_at=now, deadline=now + timedelta(seconds=deadline_s),
        )
        engine = Engine(definition, state, now)
        new = (engine.begin() if definition is not None
               else engine.refuse(f"unknown workflow '{req.workflow_id}'"))
        new.step, new.updated_at = engine.number, now
        items = _items(engine.out)
        if not await self.store.create(new, definition, items):
            await self._load(req.workflow_run_id, caused_by)  # a concurrent twin created it
            return
        await self._publish(items, caused_by, req.workflow_run_id)
        await self.store.clear_outbox(req.workflow_run_id, 1)

    # -- runs.completed, tools.results -------------------------------------------------

    async def on_run_completed(self, delivery: Delivery[RunCompleted]) -> None:
        msg = delivery.message
        if not is_step_completion(msg):
            return  # not a workflow step: most completions are not ours
        owner = await self.store.owner_of(msg.run_id)
        if owner is None:
            return
        ok = msg.status is RunStatus.COMPLETED
        output = msg.output
        if msg.structured_output is not None:
            output = json.dumps(msg.structured_output)
        error = None if ok else f"run {msg.status.value}: {msg.error}"
        await self._step(owner, lambda e: e.run_finished(msg.run_id, ok=ok, output=output,
                                                         error=error), delivery.envelope)

    async def on_tool_result(self, delivery: Delivery[ToolResult]) -> None:
        msg = delivery.message
        if not is_step_result(msg):
            return
        owner = await self.store.owner_of(msg.call_id)
        if owner is None:
            return
        if msg.content_ref is not None:
            output = json.dumps({"content_ref": msg.content_ref.model_dump(mode="json")})
        else:
            output = msg.content if isinstance(msg.content, str) else json.dumps(msg.content)
        error = None if msg.error is None else f"{msg.error.code.value}: {msg.error.message}"
        await self._step(owner, lambda e: e.run_finished(msg.call_id, ok=msg.ok, output=output,
                                                         error=error), delivery.envelope)

    # -- commands ----------------------------------------------------------------------

    async def on_command(self, delivery: Delivery[WorkflowCommand]) -> None:
        cmd = delivery.message
        if await self.store.get(cmd.workflow_run_id) is None:
            log.info("command %s for unknown workflow run %s ignored", cmd.command.value,
                     cmd.workflow_run_id)
            return
        reason = clip(cmd.reason)
        apply: Step
        if cmd.command is WorkflowCommandKind.CANCEL:
            def apply(e: Engine) -> WorkflowState:
                return e.cancel(cmd.actor, reason)
        elif cmd.command is WorkflowCommandKind.APPROVE:
            def apply(e: Engine) -> WorkflowState:
                return e.approve(cmd.step, cmd.actor, reason)
        else:
            def apply(e: Engine) -> WorkflowState:
                return e.reject(cmd.step, cmd.actor, reason)
        if not await self._step(cmd.workflow_run_id, apply, delivery.envelope):
            log.info("%s of workflow run %s changed nothing", cmd.command.value,
                     cmd.workflow_run_id)

    # -- the sweeper -------------------------------------------------------------------

    async def sweep(self) -> int:
        """Fail runs past their deadline; re-publish outboxes a crash left behind."""
        now = self.clock()
        swept = 0
        for workflow_run_id in await self.store.due(now):
            try:
                if await self._step(workflow_run_id, lambda e: e.expire(), None):
                    swept += 1
            except ConflictError:
                continue
        before = now - timedelta(seconds=self.config.outbox_redrive_after_s)
        for workflow_run_id in await self.store.unpublished(before):
            await self._load(workflow_run_id, None)
        return swept
