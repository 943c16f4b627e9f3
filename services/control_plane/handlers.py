"""What the control plane does with each consumed message.

The audit handler appends to the hash chain (idempotent by event id; a lost
race for the next seq is a transient :class:`~shared.errors.ConflictError`
that the pipeline retries). The views (agents, runs) have their own handlers
in :mod:`services.control_plane.views`.
"""

from __future__ import annotations

import logging

from pymongo.asynchronous.database import AsyncDatabase

from schemas.audit import AuditEvent
from services.control_plane.audit_chain import append
from shared.kafka.consumer import Delivery
from shared.mongo import Doc

__all__ = ["AuditLogHandler"]

log = logging.getLogger("mindstream.control_plane.audit")


class AuditLogHandler:
    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self._db = db

    async def handle(self, delivery: Delivery[AuditEvent]) -> None:
        result = await append(self._db, delivery.message)
        if result.created:
            log.debug("audit %s appended to %s at seq %d", delivery.message.event_id,
                      result.record["chain"], result.record["seq"])
