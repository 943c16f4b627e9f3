"""Emitting audit events, the same way from every service.

Digests, not documents: ``before``/``after`` are hashed (canonical JSON,
SHA-256), so the audit stream proves what changed without carrying data
that may be sensitive. Event ids are deterministic when the caller passes
the step's identity (``key``), so a replayed step re-emits the same event and
the audit log keeps one copy.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from schemas.audit import AuditEvent, AuditOutcome, AuditTarget
from schemas.common import Actor, ActorKind
from schemas.envelope import Envelope, deterministic_id
from schemas.topics import AUDIT
from shared.kafka.publisher import Publisher

__all__ = ["AuditEmitter", "digest"]


def digest(document: Any) -> str:
    """SHA-256 of the canonical JSON of ``document`` (sorted keys, no spaces)."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class AuditEmitter:
    def __init__(self, publisher: Publisher, service: str) -> None:
        self._publisher = publisher
        self._service_actor = Actor(kind=ActorKind.SERVICE, id=service)

    async def emit(
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
        key: str | None = None,
        caused_by: Envelope | None = None,
    ) -> AuditEvent:
        event_id = deterministic_id("audit", action, key) if key else str(uuid.uuid4())
        event = AuditEvent(
            event_id=event_id,
            time=datetime.now(UTC),
            actor=actor or self._service_actor,
            action=action,
            target=AuditTarget(kind=target[0], id=target[1]),
            outcome=outcome,
            reason=reason[:500] if reason else None,
            before_digest=digest(before) if before is not None else None,
            after_digest=digest(after) if after is not None else None,
            details=details or {},
        )
        await self._publisher.publish(AUDIT, event, caused_by=caused_by, message_id=event_id)
        return event
