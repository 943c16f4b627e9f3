"""The tool-call ledger and the payloads of large results, in MongoDB.

Two insert-only collections keyed by ``call_id`` (``_id``, unique by
construction) make the ledger:

* ``tool_calls``: the call was *started* (who owns it, how many attempts,
  the argument digest and size, never the arguments: a model may have put a
  secret there). A duplicate delivery loses the insert.
* ``tool_call_results``: the call *finished*, with the ``ToolResult`` that
  answers it. The first finisher wins the insert; a late one (an execution
  that was taken over after looking dead) loses it and publishes the stored
  result, so every copy of the answer carries the same content.

A call is finished exactly when its result document exists. Inserts rather
than a status update: a unique insert is the compare-and-set, and on the
MongoDB-wire server used in tests an insert costs a tenth of an update.
Entries and payloads expire after ``RETENTION_S`` where the server supports
TTL indexes (longer than any redelivery window).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from shared.mongo import Doc, IndexSpec

__all__ = ["CallRecord", "CallStatus", "Payload", "ToolCallStore"]

RETENTION_S = 30 * 24 * 3600


class CallStatus(StrEnum):
    STARTED = "started"
    FINISHED = "finished"


@dataclass(frozen=True)
class CallRecord:
    call_id: str
    status: CallStatus
    owner: str
    attempts: int
    tool: str
    result: dict[str, Any] | None = None
    outcome: str | None = None


@dataclass(frozen=True)
class Payload:
    ref_id: str
    data: bytes
    sha256: str


class ToolCallStore:
    CALLS = "tool_calls"
    RESULTS = "tool_call_results"
    PAYLOADS = "tool_payloads"
    INDEXES: dict[str, list[IndexSpec]] = {
        CALLS: [
            IndexSpec([("run_id", 1)], name="by_run"),
            IndexSpec([("started_at", 1)], name="ttl_started", expire_after_seconds=RETENTION_S),
        ],
        RESULTS: [
            IndexSpec([("finished_at", 1)], name="ttl_finished", expire_after_seconds=RETENTION_S),
        ],
        PAYLOADS: [
            IndexSpec([("call_id", 1)], name="by_call"),
            IndexSpec([("created_at", 1)], name="ttl_created", expire_after_seconds=RETENTION_S),
        ],
    }

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self._calls = db[self.CALLS]
        self._results = db[self.RESULTS]
        self._payloads = db[self.PAYLOADS]

    async def get(self, call_id: str) -> CallRecord | None:
        done = await self._results.find_one({"_id": call_id})
        if done is not None:
            return CallRecord(
                call_id=call_id, status=CallStatus.FINISHED, owner=str(done.get("owner", "")),
                attempts=int(done.get("attempts", 1)), tool=str(done.get("tool", "")),
                result=done.get("result"), outcome=done.get("outcome"),
            )  # fmt: skip
        started = await self._calls.find_one({"_id": call_id})
        if started is None:
            return None
        return CallRecord(
            call_id=call_id, status=CallStatus.STARTED, owner=str(started.get("owner", "")),
            attempts=int(started.get("attempts", 1)), tool=str(started.get("tool", "")),
        )  # fmt: skip

    async def start(
        self,
        call_id: str,
        *,
        owner: str,
        tool: str,
        agent_id: str,
        run_id: str,
        session_id: str,
        args_digest: str,
        args_size: int,
        now: datetime,
    ) -> bool:
        """Record the call as started by ``owner``; False if it was already recorded."""
        try:
            await self._calls.insert_one({
                "_id": call_id, "owner": owner, "attempts": 1, "tool": tool,
                "agent_id": agent_id, "run_id": run_id, "session_id": session_id,
                "args_digest": args_digest, "args_size": args_size, "started_at": now,
            })  # fmt: skip
        except DuplicateKeyError:
            return False
        return True

    async def take_over(self, call_id: str, *, owner: str, previous: str, now: datetime) -> bool:
        """Become the owner of an unfinished call (crash recovery); False if someone else did."""
        result = await self._calls.update_one(
            {"_id": call_id, "owner": previous},
            {"$set": {"owner": owner, "restarted_at": now}, "$inc": {"attempts": 1}},
        )
        return result.modified_count == 1

    async def finish(
        self,
        call_id: str,
        *,
        owner: str,
        tool: str,
        attempts: int,
        result: dict[str, Any],
        outcome: str,
        duration_ms: int,
        now: datetime,
    ) -> bool:
        """Store the result; False if the call already has one (which then stands)."""
        try:
            await self._results.insert_one({
                "_id": call_id, "owner": owner, "tool": tool, "attempts": attempts,
                "result": result, "outcome": outcome, "duration_ms": duration_ms,
                "finished_at": now,
            })  # fmt: skip
        except DuplicateKeyError:
            return False
        return True

    async def put_payload(self, ref_id: str, call_id: str, data: bytes, now: datetime) -> Payload:
        """Store a large result once per ref id; returns what is stored under it."""
        digest = hashlib.sha256(data).hexdigest()
        try:
            await self._payloads.insert_one({
                "_id": ref_id, "call_id": call_id, "data": data, "sha256": digest,
                "size_bytes": len(data), "created_at": now,
            })  # fmt: skip
        except DuplicateKeyError:
            stored = await self.get_payload(ref_id)
            if stored is not None:
                return stored
        return Payload(ref_id, data, digest)

    async def get_payload(self, ref_id: str) -> Payload | None:
        doc = await self._payloads.find_one({"_id": ref_id})
        if doc is None:
            return None
        return Payload(ref_id, bytes(doc["data"]), str(doc["sha256"]))
