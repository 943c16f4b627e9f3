"""Read models built from topics: agents, runs and their events.

The control plane shows what it sees on topics, not what other services
keep in their collections. Every write here is idempotent, so a redelivered
or replayed message changes nothing:

- agents: the newest version wins (a conditional update on ``version``);
- run events: one document per (run, seq), duplicates refused by the index;
- a run's status moves only forward in ``seq`` order, and a terminal status
  (completed, failed, cancelled) is final;
- the run's final output and turns come from ``runs.completed``.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from schemas.agents import AgentDefinition
from schemas.runs import RunCompleted, RunEvent, RunEventKind, RunRequested
from services.control_plane.store import AGENTS_VIEW, RUN_EVENTS_VIEW, RUNS_VIEW, SESSIONS_VIEW
from shared.kafka.consumer import Delivery
from shared.mongo import Doc, document_lock, update_by_id

__all__ = ["TERMINAL", "AgentsView", "RunsView", "status_of"]

TERMINAL = frozenset({"completed", "failed", "cancelled"})
_STATUS_BY_KIND = {
    RunEventKind.RUN_STARTED: "running",
    RunEventKind.RUN_AWAITING_APPROVAL: "awaiting_approval",
    RunEventKind.RUN_RESUMED: "running",
    RunEventKind.RUN_COMPLETED: "completed",
    RunEventKind.RUN_FAILED: "failed",
    RunEventKind.RUN_CANCELLED: "cancelled",
}


def status_of(kind: RunEventKind) -> str | None:
    """The run status an event implies, if it changes it."""
    return _STATUS_BY_KIND.get(kind)


class AgentsView:
    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self._coll = db[AGENTS_VIEW]

    @staticmethod
    def document(definition: AgentDefinition) -> Doc:
        return {"_id": definition.id, "version": definition.version, "paused": definition.paused,
                "definition": definition.model_dump(mode="json"),
                "updated_at": definition.updated_at or datetime.now(UTC)}

    async def apply(self, definition: AgentDefinition) -> bool:
        """Record a definition unless a newer (or the same) version is already known.

        The same version republished later (a canary's rollout changed: it routes
        sessions, it is not new behaviour) replaces the older copy.
        """
        doc = self.document(definition)
        newer: list[Doc] = [{"version": {"$lt": definition.version}}]
        if definition.updated_at is not None:
            newer.append({"version": definition.version,
                          "updated_at": {"$lt": definition.updated_at}})
        result = await self._coll.update_one(
            {"_id": definition.id, "$or": newer},
            {"$set": {k: v for k, v in doc.items() if k != "_id"}})
        if result.matched_count:
            return True
        try:
            await self._coll.insert_one(doc)
        except DuplicateKeyError:
            return False  # same or newer version already there
        return True

    async def handle(self, delivery: Delivery[AgentDefinition]) -> None:
        await self.apply(delivery.message)

    async def get(self, agent_id: str) -> Doc | None:
        return await self._coll.find_one({"_id": agent_id})

    async def replace(self, definition: AgentDefinition, expected_version: int | None) -> bool:
        """Write the control plane's own change; False if the stored version moved meanwhile."""
        doc = self.document(definition)
        if expected_version is None:
            try:
                await self._coll.insert_one(doc)
            except DuplicateKeyError:
                return False
            return True
        result = await self._coll.update_one(
            {"_id": definition.id, "version": expected_version},
            {"$set": {k: v for k, v in doc.items() if k != "_id"}})
        return result.matched_count == 1

    async def restore(self, previous: Doc | None, failed: AgentDefinition) -> None:
        """Undo :meth:`replace` when publishing failed (only if nothing newer arrived)."""
        if previous is None:
            await self._coll.delete_one({"_id": failed.id, "version": failed.version})
        else:
            await self._coll.replace_one({"_id": failed.id, "version": failed.version}, previous)


class RunsView:
    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self._db = db
        self._runs = db[RUNS_VIEW]
        self._events = db[RUN_EVENTS_VIEW]
        self._sessions = db[SESSIONS_VIEW]

    def _writer(self, run_id: str) -> asyncio.Lock:
        """One writer per run in this process. A run's events, its completion (another
        topic, another consumer) and the API's submission all write its document; on
        FerretDB each write reads and rewrites the whole document, so two at once can
        lose one of them (an event's ``$max`` undoing the completion's status)."""
        return document_lock(self._db.name, f"{RUNS_VIEW}#writer", run_id)

    async def requested(self, request: RunRequested, *, submitted_by: str | None) -> None:
        """The control plane's own submission: it knows the user and input."""
        async with self._writer(request.run_id):
            await self._requested(request, submitted_by)

    async def _requested(self, request: RunRequested, submitted_by: str | None) -> None:
        await self._ensure(request.run_id, request.session_id, request.agent_id,
                           request.requested_at)
        await self._runs.update_one({"_id": request.run_id}, {"$set": {
            "user_id": request.user_id, "input": request.input, "submitted_by": submitted_by,
            "metadata": dict(request.metadata)}})

    async def _ensure(self, run_id: str, session_id: str, agent_id: str, at: datetime) -> None:
        try:
            await self._runs.insert_one({
                "_id": run_id, "session_id": session_id, "agent_id": agent_id,
                "status": "requested", "status_seq": -1, "created_at": at, "updated_at": at,
                "last_seq": -1})
        except DuplicateKeyError:
            pass
        await self._sessions.update_one(
            {"_id": session_id},
            {"$setOnInsert": {"first_at": at}, "$max": {"last_at": at},
             "$addToSet": {"agent_ids": agent_id.partition("@")[0]}},
            upsert=True)

    async def event(self, event: RunEvent) -> None:
        async with self._writer(event.run_id):
            await self._event(event)

    async def _event(self, event: RunEvent) -> None:
        doc: Doc = {"_id": f"{event.run_id}:{event.seq}", **event.model_dump(mode="json")}
        doc["at"] = event.at
        try:
            await self._events.insert_one(doc)
        except DuplicateKeyError:
            pass
        update: dict[str, Any] = {"$max": {"last_seq": event.seq, "updated_at": event.at}}
        if event.kind is RunEventKind.RUN_STARTED:
            update["$set"] = {"started_at": event.at, "agent_id": event.agent_id}
        # A run's many events (deltas above all) find its document; only the first
        # creates it and touches the session, the end touches the session again.
        # Per event that is two writes less, which decides whether this view keeps up.
        if (await self._runs.update_one({"_id": event.run_id}, update)).matched_count == 0:
            await self._ensure(event.run_id, event.session_id, event.agent_id, event.at)
            await self._runs.update_one({"_id": event.run_id}, update)
        status = status_of(event.kind)
        if status is not None:
            fields: Doc = {"status": status, "status_seq": event.seq}
            if status in TERMINAL:
                fields |= {"ended_at": event.at, "error": event.reason}
                await self._sessions.update_one({"_id": event.session_id},
                                                {"$max": {"last_at": event.at}})
            await update_by_id(self._db, RUNS_VIEW, event.run_id, {"$set": fields},
                               where={"status_seq": {"$lt": event.seq},
                                      "status": {"$nin": sorted(TERMINAL)}})

    async def completed(self, result: RunCompleted) -> None:
        async with self._writer(result.run_id):
            await self._completed(result)

    async def _completed(self, result: RunCompleted) -> None:
        await self._ensure(result.run_id, result.session_id, result.agent_id, result.completed_at)
        await self._runs.update_one({"_id": result.run_id}, {"$set": {
            "user_id": result.user_id, "output": result.output, "error": result.error,
            "usage": result.usage.model_dump(mode="json"),
            "metrics": result.metrics.model_dump(mode="json"),
            "messages": [m.model_dump(mode="json", exclude_none=True) for m in result.messages],
            "completed_at": result.completed_at, "final_status": result.status.value}})
        await update_by_id(self._db, RUNS_VIEW, result.run_id,
                           {"$set": {"status": result.status.value, "ended_at": result.completed_at}},
                           where={"status": {"$nin": sorted(TERMINAL)}})

    async def handle_event(self, delivery: Delivery[RunEvent]) -> None:
        await self.event(delivery.message)

    async def handle_completed(self, delivery: Delivery[RunCompleted]) -> None:
        await self.completed(delivery.message)
