"""The reasoning service's MongoDB collections: ``runs`` and ``agent_versions``.

A run document keeps the state machine's :class:`RunState` as one JSON string
(``state``) next to the few fields queries need (status, deadline, outbox flag).
Storing the state as a string keeps arbitrary model-made keys (tool arguments may
contain ``.`` or ``$``) out of MongoDB's key rules, on MongoDB and FerretDB alike.

``outbox`` holds the messages the last persisted step must publish, with their
final ids, written in the same versioned update as the state change (architecture
rule 2): a redelivered input, or the sweeper, finds them and re-publishes the very
same ids. Clearing the outbox after publishing does not bump ``version``: it only
drops messages already sent, so losing that race merely re-sends duplicates.

``claim_until`` is the lease of the state's model-call claim (see
:mod:`services.reasoning.handlers`): its holder extends it without a new version, so
it wins over the ``until`` inside ``state``, and the sweeper finds running runs whose
holder died mid-call by it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from schemas.agents import AgentDefinition
from services.reasoning.state import RunState, RunStatus
from shared.mongo import Doc, IndexSpec, matches, update_if_version, update_versioned

__all__ = [
    "AGENT_VERSIONS",
    "INDEXES",
    "RUNS",
    "AgentVersionStore",
    "OutboxItem",
    "RunStore",
    "StoredRun",
    "Sweepable",
]

RUNS = "runs"
AGENT_VERSIONS = "agent_versions"

INDEXES: dict[str, list[IndexSpec]] = {
    RUNS: [
        IndexSpec([("status", 1), ("deadline", 1)], name="status_deadline"),
        IndexSpec([("outbox_pending", 1), ("updated_at", 1)], name="outbox_pending"),
        IndexSpec([("status", 1), ("claim_until", 1)], name="status_claim"),
        IndexSpec([("session_id", 1), ("created_at", 1)], name="session_created"),
    ],
    AGENT_VERSIONS: [IndexSpec([("agent_id", 1), ("version", 1)], unique=True, name="agent_ver")],
}


@dataclass(frozen=True)
class OutboxItem:
    """One message a persisted step still has to publish."""

    id: str
    topic: str  # logical topic name (registry)
    body: str  # the message's JSON
    physical_topic: str | None = None  # a client's reply topic
    best_effort: bool = False  # a failure is logged, not retried (client reply topics)

    def to_doc(self) -> Doc:
        return {
            "id": self.id,
            "topic": self.topic,
            "body": self.body,
            "physical_topic": self.physical_topic,
            "best_effort": self.best_effort,
        }

    @classmethod
    def from_doc(cls, doc: Doc) -> OutboxItem:
        return cls(
            id=str(doc["id"]),
            topic=str(doc["topic"]),
            body=str(doc["body"]),
            physical_topic=doc.get("physical_topic"),
            best_effort=bool(doc.get("best_effort", False)),
        )


@dataclass
class StoredRun:
    state: RunState
    outbox: list[OutboxItem] = field(default_factory=list)


def _doc(state: RunState, outbox: list[OutboxItem] | None) -> Doc:
    doc: Doc = {
        "status": state.status.value,
        "deadline": state.deadline,
        "claim_until": state.model_claim.until if state.model_claim else None,
        "session_id": state.session_id,
        "agent_id": state.agent_id,
        "parent_run_id": state.parent_run_id,
        "created_at": state.created_at,
        "updated_at": state.updated_at,
        "state": state.model_dump_json(),
    }
    if outbox is not None:
        doc |= {"outbox": [item.to_doc() for item in outbox], "outbox_pending": bool(outbox)}
    return doc


def _stored(doc: Doc) -> StoredRun:
    state = RunState.model_validate_json(doc["state"])
    state.version = int(doc["version"])
    if state.model_claim is not None and doc.get("claim_until") is not None:
        state.model_claim.until = doc["claim_until"]
    return StoredRun(state, [OutboxItem.from_doc(d) for d in doc.get("outbox") or []])


class RunStore:
    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self._runs = db[RUNS]
        self._db = db

    async def get(self, run_id: str) -> StoredRun | None:
        doc = await self._runs.find_one({"_id": run_id})
        return None if doc is None else _stored(doc)

    async def create(self, state: RunState, outbox: list[OutboxItem]) -> bool:
        """Insert a new run; False when it exists already (the run_id is the idempotency key)."""
        state.version = max(state.version, 1)
        try:
            await self._runs.insert_one(
                {"_id": state.run_id, "version": state.version, **_doc(state, outbox)}
            )
        except DuplicateKeyError:
            return False
        return True

    async def save(
        self, expected_version: int, state: RunState, outbox: list[OutboxItem] | None
    ) -> RunState:
        """Write ``state`` and its outbox if the run is still at ``expected_version``.

        ``outbox=None`` leaves the stored outbox as it is (a write that sends nothing,
        like a model-call claim). Raises :class:`shared.errors.ConflictError`
        (transient) when another writer won.
        """
        state.version = expected_version + 1
        doc = await update_versioned(
            self._db, RUNS, state.run_id, expected_version, {"$set": _doc(state, outbox)}
        )
        state.version = int(doc["version"])
        return state

    async def clear_outbox(self, run_id: str, version: int) -> None:
        await update_if_version(self._db, RUNS, run_id, version,
                                {"$set": {"outbox": [], "outbox_pending": False}})

    async def extend_claim(self, run_id: str, version: int, until: datetime) -> bool:
        """Extend the model-call claim's lease while the run is still at ``version``."""
        return await update_if_version(self._db, RUNS, run_id, version,
                                       {"$set": {"claim_until": until}})

    async def sweepable(self, now: datetime, statuses: list[RunStatus], unpublished_before: datetime,
                        limit: int = 100) -> Sweepable:
        """The runs a sweep must look at, in one read: past their deadline in one of
        ``statuses``; running with a lapsed model-call claim; outbox persisted before
        ``unpublished_before`` and still not cleared.

        One ``$or`` query instead of three: each branch has its index on MongoDB,
        and on FerretDB (no secondary indexes) the collection is read once per sweep
        rather than three times.
        """
        due = {"status": {"$in": [s.value for s in statuses]}, "deadline": {"$lt": now}}
        stalled = {"status": RunStatus.RUNNING.value, "claim_until": {"$lt": now}}
        unpublished = {"outbox_pending": True, "updated_at": {"$lt": unpublished_before}}
        cursor = self._runs.find(
            {"$or": [due, stalled, unpublished]},
            {"status": 1, "deadline": 1, "claim_until": 1, "outbox_pending": 1, "updated_at": 1},
        ).limit(limit * 3)
        found = Sweepable([], [], [])
        async for doc in cursor:
            run_id = str(doc["_id"])
            for ids, where in ((found.due, due), (found.stalled, stalled),
                               (found.unpublished, unpublished)):
                if matches(doc, where) and len(ids) < limit:
                    ids.append(run_id)
        return found


@dataclass(frozen=True)
class Sweepable:
    due: list[str]
    stalled: list[str]
    unpublished: list[str]


class AgentVersionStore:
    """Every agent version this service has seen, so pinned runs survive restarts.

    The agents topic is compacted to the newest version per agent; older versions
    live on only here.
    """

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self._coll = db[AGENT_VERSIONS]

    async def save(self, definition: AgentDefinition) -> None:
        key = f"{definition.id}@{definition.version}"
        body: dict[str, Any] = {
            "agent_id": definition.id,
            "version": definition.version,
            "definition": definition.model_dump_json(),
        }
        try:
            await self._coll.update_one({"_id": key}, {"$set": body}, upsert=True)
        except DuplicateKeyError:
            # Replicas starting together upsert the same key; the loser's insert fails
            # (FerretDB does not retry it as MongoDB does). The document exists: update it.
            await self._coll.update_one({"_id": key}, {"$set": body})

    async def all(self) -> list[AgentDefinition]:
        found: list[AgentDefinition] = []
        async for doc in self._coll.find({}):
            found.append(AgentDefinition.model_validate(json.loads(doc["definition"])))
        return found
