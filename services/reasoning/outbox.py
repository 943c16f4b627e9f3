"""What one persisted step of a run will publish, built before the step is written.

A :class:`Step` collects run events (numbering them with the run's ``seq``), audit
events and outgoing contract messages. Every message gets its id here, derived from
the run id, the step number and its position (``deterministic_id(run_id, "step", n,
i)``), so a step computed twice (a crash before the write) yields the same ids, and a
step re-published from the stored outbox carries them too.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from schemas.audit import AuditEvent, AuditOutcome, AuditTarget
from schemas.base import Message
from schemas.common import Actor, ActorKind, Usage
from schemas.envelope import deterministic_id
from schemas.runs import RunEvent, RunEventKind
from schemas.topics import AUDIT, RUNS_EVENTS, TopicSpec
from services.reasoning.store import OutboxItem
from shared.audit import digest

__all__ = ["SERVICE_ACTOR", "Step", "clip"]

SERVICE_ACTOR = Actor(kind=ActorKind.SERVICE, id="reasoning")


def clip(text: str | None, limit: int = 1000) -> str | None:
    """Contract short texts are bounded; reasons are cut rather than refused."""
    if text is None:
        return None
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Step:
    def __init__(
        self, *, run_id: str, session_id: str, agent_ref: str, number: int, seq: int, now: datetime
    ) -> None:
        self.run_id, self.session_id, self.agent_ref = run_id, session_id, agent_ref
        self.number, self.seq, self.now = number, seq, now
        self.items: list[OutboxItem] = []

    def _next_id(self) -> str:
        return deterministic_id(self.run_id, "step", str(self.number), str(len(self.items)))

    def send(
        self,
        spec: TopicSpec,
        message: Message,
        *,
        physical_topic: str | None = None,
        best_effort: bool = False,
        message_id: str | None = None,
    ) -> str:
        item_id = message_id or self._next_id()
        self.items.append(
            OutboxItem(
                id=item_id,
                topic=spec.name,
                body=message.model_dump_json(),
                physical_topic=physical_topic,
                best_effort=best_effort,
            )
        )
        return item_id

    def event(
        self,
        kind: RunEventKind,
        *,
        call_id: str | None = None,
        tool: str | None = None,
        child_run_id: str | None = None,
        reason: str | None = None,
        text: str | None = None,
        usage: Usage | None = None,
        data: dict[str, Any] | None = None,
    ) -> RunEvent:
        event = RunEvent(
            run_id=self.run_id,
            session_id=self.session_id,
            agent_id=self.agent_ref,
            seq=self.seq,
            kind=kind,
            at=self.now,
            text=text,
            call_id=call_id,
            tool=tool,
            child_run_id=child_run_id,
            reason=clip(reason),
            usage=usage,
            data=data or {},
        )
        self.seq += 1
        self.send(RUNS_EVENTS, event)
        return event

    def audit(
        self,
        action: str,
        target: tuple[str, str],
        *,
        outcome: AuditOutcome = AuditOutcome.SUCCESS,
        actor: Actor | None = None,
        reason: str | None = None,
        before: Any = None,
        after: Any = None,
        details: dict[str, Any] | None = None,
    ) -> AuditEvent:
        """Like :class:`shared.audit.AuditEmitter`, but into the outbox: persisted first."""
        event_id = self._next_id()
        event = AuditEvent(
            event_id=event_id,
            time=self.now,
            actor=actor or SERVICE_ACTOR,
            action=action,
            target=AuditTarget(kind=target[0], id=target[1]),
            outcome=outcome,
            reason=clip(reason, 500),
            before_digest=digest(before) if before is not None else None,
            after_digest=digest(after) if after is not None else None,
            details=details or {},
        )
        self.send(AUDIT, event, message_id=event_id)
        return event
