"""Per-agent, per-minute rollups of runs in MongoDB (``metrics_rollups``).

One document per agent and minute (the minute the run ended) holds run
counts by outcome and failure class, tokens, estimated cost, and latency
p50/p95/p99 computed from the latency samples it keeps (at most
``max_samples`` per minute, the latest ones).

Idempotent under replay: a run is added by one conditional upsert whose
filter says "this run id is not in ``run_ids`` yet" and whose update pushes
it there, so counting and remembering happen atomically. A replayed
RunCompleted matches nothing; its upsert then collides on ``_id`` and is
recognised as a duplicate. Percentiles (and the trimming of samples) are
written only if the document still has the run count they were computed
from, so concurrent replicas never leave stale ones behind.

Writes from one process are serialised by a lock: MongoDB makes each
upsert atomic anyway, but FerretDB loses concurrent updates to one
document, and rollup writes are far too few for the lock to cost anything.
(``$push`` with ``$slice`` is not used for the same reason: FerretDB
ignores it.)

``run_ids`` grows with runs per agent-minute (tens of bytes each): a 16 MB
document holds several hundred thousand, far beyond one agent's minute.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, PyMongoError

from schemas.common import Usage
from schemas.runs import RunStatus
from services.telemetry.classify import ReasonClass
from services.telemetry.errors import RollupWriteError
from services.telemetry.percentiles import summarise
from services.telemetry.store import ROLLUPS
from shared.mongo import Doc, update_by_id

__all__ = ["RollupStore", "RunSummary", "minute_of", "read_rollups"]

_HIDDEN = {"_id": 0, "run_ids": 0, "latency_samples_ms": 0}
_INSERT_RACES = 3


@dataclass(frozen=True)
class RunSummary:
    """What a rollup needs from one ended run."""

    run_id: str
    agent: str
    status: RunStatus
    reason_class: ReasonClass
    ended_at: datetime
    duration_ms: float | None
    usage: Usage
    cost: float | None


def minute_of(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(second=0, microsecond=0)


class RollupStore:
    def __init__(
        self,
        db: AsyncDatabase[Doc],
        *,
        retention: timedelta,
        max_samples: int = 500,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._db = db
        self._coll = db[ROLLUPS]
        self._retention = retention
        self._max_samples = max_samples
        self._clock = clock
        self._lock = asyncio.Lock()

    async def record(self, run: RunSummary) -> bool:
        """Add ``run`` to its agent-minute; ``False`` when it was already counted."""
        minute = minute_of(run.ended_at)
        doc_id = f"{run.agent}|{minute.strftime('%Y-%m-%dT%H:%MZ')}"
        inc: dict[str, Any] = {
            "runs": 1,
            f"outcomes.{run.status.value}": 1,
            "prompt_tokens": run.usage.prompt_tokens,
            "completion_tokens": run.usage.completion_tokens,
            "cost": float(run.cost or 0.0),
        }
        if run.reason_class is not ReasonClass.NONE:
            inc[f"reasons.{run.reason_class.value}"] = 1
        push: dict[str, Any] = {"run_ids": run.run_id}
        if run.duration_ms is not None:
            push["latency_samples_ms"] = float(run.duration_ms)
        update = {
            "$inc": inc,
            "$push": push,
            "$set": {"updated_at": self._clock()},
            "$setOnInsert": {"agent": run.agent, "minute": minute,
                             "expires_at": minute + self._retention},
        }
        try:
            async with self._lock:
                doc = await self._upsert(doc_id, run.run_id, update)
                if doc is None:
                    return False
                await self._summarise(doc)
        except PyMongoError as exc:
            raise RollupWriteError(f"rollup {doc_id}: {exc}") from exc
        return True

    async def _upsert(self, doc_id: str, run_id: str, update: Doc) -> Doc | None:
        for _ in range(_INSERT_RACES):
            try:
                return await update_by_id(self._db, ROLLUPS, doc_id, update,
                                          where={"run_ids": {"$ne": run_id}}, upsert=True)
            except DuplicateKeyError:
                # Either the run is counted already, or another replica inserted the
                # document first; in the second case the filter now matches: go again.
                counted = await self._coll.find_one({"_id": doc_id}, {"run_ids": 1})
                if counted is not None and run_id in counted.get("run_ids", ()):
                    return None
        raise RollupWriteError(f"rollup {doc_id}: insert kept racing")

    async def _summarise(self, doc: Doc) -> None:
        """Percentiles from the kept samples, trimming them to the newest ``max_samples``."""
        samples = [float(s) for s in doc.get("latency_samples_ms", [])]
        if not samples:
            return
        fields: dict[str, Any] = {"latency_ms": summarise(samples[-self._max_samples:])}
        if len(samples) > self._max_samples:
            fields["latency_samples_ms"] = samples[-self._max_samples:]
        await update_by_id(self._db, ROLLUPS, doc["_id"], {"$set": fields}, where={"runs": doc["runs"]})


async def read_rollups(
    db: AsyncDatabase[Doc],
    agent: str | None = None,
    since: datetime | None = None,
    *,
    limit: int = 10_000,
) -> list[dict[str, Any]]:
    """Rollups oldest minute first, for the control plane; ``agent`` and ``since`` filter.

    Each item: ``agent``, ``minute``, ``runs``, ``outcomes`` {status: n},
    ``reasons`` {class: n}, ``prompt_tokens``, ``completion_tokens``, ``cost``,
    ``latency_ms`` {p50, p95, p99} (absent when no run had a duration),
    ``updated_at``, ``expires_at``.
    """
    query: dict[str, Any] = {}
    if agent is not None:
        query["agent"] = agent
    if since is not None:
        query["minute"] = {"$gte": minute_of(since)}
    cursor = db[ROLLUPS].find(query, _HIDDEN).sort([("minute", 1), ("agent", 1)]).limit(limit)
    return [dict(doc) async for doc in cursor]
