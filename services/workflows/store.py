"""The workflows service's MongoDB collections: ``workflow_runs`` and ``workflow_versions``.

A run document keeps :class:`WorkflowState` as one JSON string (``state``),
like reasoning's runs (model-made text stays out of MongoDB's key rules), next
to what queries need: ``status``, ``deadline``, ``run_ids`` (every agent run
and tool call the run dispatched: a ``RunCompleted`` or ``ToolResult`` finds
its workflow by it) and the ``outbox`` of the last persisted step. The
definition the run started with is stored beside it, so a run finishes on the
version it began with whatever is applied meanwhile.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from schemas.workflows import WorkflowDefinition
from services.workflows.state import WorkflowState, WorkflowStatus
from shared.mongo import Doc, IndexSpec, update_if_version, update_versioned

__all__ = ["INDEXES", "RUNS", "VERSIONS", "OutboxItem", "StoredRun", "WorkflowRunStore",
           "WorkflowVersionStore"]

RUNS = "workflow_runs"
VERSIONS = "workflow_versions"

INDEXES: dict[str, list[IndexSpec]] = {
    RUNS: [
        IndexSpec([("run_ids", 1)], name="run_ids"),
        IndexSpec([("status", 1), ("deadline", 1)], name="status_deadline"),
        IndexSpec([("outbox_pending", 1), ("updated_at", 1)], name="outbox_pending"),
        IndexSpec([("workflow_id", 1), ("created_at", 1)], name="workflow_created"),
    ],
    VERSIONS: [IndexSpec([("workflow_id", 1), ("version", 1)], unique=True, name="workflow_ver")],
}


@dataclass(frozen=True)
class OutboxItem:
    id: str
    topic: str  # logical topic name
    body: str  # the message's JSON
    physical_topic: str | None = None
    best_effort: bool = False

    def to_doc(self) -> Doc:
        return {"id": self.id, "topic": self.topic, "body": self.body,
                "physical_topic": self.physical_topic, "best_effort": self.best_effort}

    @classmethod
    def from_doc(cls, doc: Doc) -> OutboxItem:
        return cls(id=str(doc["id"]), topic=str(doc["topic"]), body=str(doc["body"]),
                   physical_topic=doc.get("physical_topic"),
                   best_effort=bool(doc.get("best_effort", False)))


@dataclass
class StoredRun:
    state: WorkflowState
    definition: WorkflowDefinition | None  # None: refused at start (unknown workflow)
    outbox: list[OutboxItem] = field(default_factory=list)


def _fields(state: WorkflowState, outbox: list[OutboxItem]) -> Doc:
    return {
        "status": state.status.value,
        "workflow_id": state.workflow_id,
        "workflow_version": state.workflow_version,
        "deadline": state.deadline,
        "created_at": state.created_at,
        "updated_at": state.updated_at,
        "run_ids": state.run_ids(),
        "outbox": [item.to_doc() for item in outbox],
        "outbox_pending": bool(outbox),
        "state": state.model_dump_json(),
    }


def _stored(doc: Doc) -> StoredRun:
    state = WorkflowState.model_validate_json(doc["state"])
    state.version = int(doc["version"])
    raw = doc.get("definition")
    definition = WorkflowDefinition.model_validate_json(raw) if raw else None
    return StoredRun(state, definition, [OutboxItem.from_doc(d) for d in doc.get("outbox") or []])


class WorkflowRunStore:
    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self._db = db
        self._runs = db[RUNS]

    async def get(self, workflow_run_id: str) -> StoredRun | None:
        doc = await self._runs.find_one({"_id": workflow_run_id})
        return None if doc is None else _stored(doc)

    async def owner_of(self, run_id: str) -> str | None:
        """The workflow run that dispatched this agent run or tool call, if any."""
        doc = await self._runs.find_one({"run_ids": run_id}, {"_id": 1})
        return None if doc is None else str(doc["_id"])

    async def create(self, state: WorkflowState, definition: WorkflowDefinition | None,
                     outbox: list[OutboxItem]) -> bool:
        """Insert a new run; False when it exists (the workflow_run_id is the idempotency key)."""
        state.version = 1
        try:
            await self._runs.insert_one({"_id": state.workflow_run_id, "version": 1,
                                         "definition": definition.model_dump_json() if definition else None,
                                         **_fields(state, outbox)})
        except DuplicateKeyError:
            return False
        return True

    async def save(self, expected_version: int, state: WorkflowState,
                   outbox: list[OutboxItem]) -> WorkflowState:
        """Write if still at ``expected_version``; ConflictError (transient) otherwise."""
        doc = await update_versioned(self._db, RUNS, state.workflow_run_id, expected_version,
                                     {"$set": _fields(state, outbox)})
        state.version = int(doc["version"])
        return state

    async def clear_outbox(self, workflow_run_id: str, version: int) -> None:
        await update_if_version(self._db, RUNS, workflow_run_id, version,
                                {"$set": {"outbox": [], "outbox_pending": False}})

    async def due(self, now: datetime, limit: int = 100) -> list[str]:
        cursor = self._runs.find({"status": WorkflowStatus.RUNNING.value,
                                  "deadline": {"$lt": now}}, {"_id": 1}).limit(limit)
        return [str(doc["_id"]) async for doc in cursor]

    async def unpublished(self, before: datetime, limit: int = 100) -> list[str]:
        cursor = self._runs.find({"outbox_pending": True, "updated_at": {"$lt": before}},
                                 {"_id": 1}).limit(limit)
        return [str(doc["_id"]) async for doc in cursor]


class WorkflowVersionStore:
    """Every workflow version seen, so a run pinned to an older one works after a restart."""

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self._coll = db[VERSIONS]

    async def save(self, definition: WorkflowDefinition) -> None:
        await self._coll.update_one(
            {"_id": definition.ref()},
            {"$set": {"workflow_id": definition.id, "version": definition.version,
                      "definition": definition.model_dump_json()}},
            upsert=True)

    async def all(self) -> list[WorkflowDefinition]:
        return [WorkflowDefinition.model_validate(json.loads(doc["definition"]))
                async for doc in self._coll.find({})]
