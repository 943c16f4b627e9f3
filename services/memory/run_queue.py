"""One run at a time per session, in the order the runs were requested.

Why: a conversation's next turn must see the previous one, and its answer must
not overtake it. Kafka keeps a session's *messages* in order, but a run is many
messages over time (tool calls, approvals, a model call that outlives a killed
process and waits out its lease), so run N+1's request can reach memory while
run N is still going. Assembled then, N+1 would miss N's turn, and could finish
first. So memory admits a session's runs one at a time: a request whose
predecessor has not ended waits here, and the predecessor's ``runs.completed``
(whatever its status) admits it, after its turn is recorded.

Storage; every hot-path read and write is by ``_id`` (FerretDB uses no
secondary index for them):

* ``run_queue``, slot ``<session>#<pos>``: the run, its request and envelope, and
  its state ``waiting`` → ``admitted`` → ``done`` (or ``waiting`` → ``cancelled``, a
  run cancelled before its turn, passed over when the turn comes). Positions are dense and
  allocated by a unique insert, which is atomic on every MongoDB-wire server
  (FerretDB does not apply a conditional update atomically across processes).
  Ended slots expire within the hour, so the sweeper's scan stays small;
* ``run_queue``, ``head:<session>``: the next free position, a hint (the insert decides),
  moved past a slot only once the slot is linked to its run (below);
* ``run_queue_runs``, ``<run_id>``: the slot a run holds, so a replayed request
  finds it (kept as long as the processed-message ledger remembers).

The request and the completion handlers may run on different replicas. The
request inserts its slot, then reads its predecessor; the completion marks its
slot done, then reads its successor. Whichever reads second sees the other's
write, so a successor is admitted once (the admitting write is guarded; a slot
is admitted only once linked to its run, so its own completion finds it). A slot
is marked ``admitted`` before its ``RunReady`` is published, and every replay of
the request or of the predecessor's completion re-publishes an ``admitted``
slot's ``RunReady``, so a crash between the two loses nothing.

A predecessor that never ends (its ``RunReady`` was dead-lettered, say) holds
its session only until its deadline and a grace have passed: then the sweeper,
or the next request, admits the successor and counts the predecessor abandoned.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError
from pymongo.write_concern import WriteConcern

from schemas.envelope import Envelope
from schemas.runs import RunRequested
from shared.mongo import Doc, IndexSpec, update_by_id

__all__ = ["INDEXES", "RUN_QUEUE", "RUN_QUEUE_RUNS", "RunQueue", "Sequencer", "Slot", "SlotState"]

log = logging.getLogger("mindstream.memory.queue")

RUN_QUEUE = "run_queue"
RUN_QUEUE_RUNS = "run_queue_runs"
DONE_RETENTION = timedelta(hours=1)
"""A done slot only answers its successor's "has my predecessor ended?" (absent
answers yes too), so it is kept briefly."""
RUN_RETENTION = timedelta(days=7)
"""How long a replayed request is recognised (the processed-message ledger's window)."""
HEAD_RETENTION = timedelta(days=30)

INDEXES: dict[str, tuple[IndexSpec, ...]] = {
    RUN_QUEUE: (
        IndexSpec([("expires_at", 1)], name="ttl_expires_at", expire_after_seconds=0),
        IndexSpec([("state", 1)], name="state"),
    ),
    RUN_QUEUE_RUNS: (
        IndexSpec([("expires_at", 1)], name="ttl_expires_at", expire_after_seconds=0),
    ),
}


class SlotState(StrEnum):
    WAITING = "waiting"
    ADMITTED = "admitted"
    CANCELLED = "cancelled"  # ended while waiting: its turn is passed over when it comes
    DONE = "done"


@dataclass(frozen=True)
class Slot:
    session_id: str
    pos: int
    run_id: str
    state: SlotState
    request: RunRequested | None
    envelope: Envelope | None
    stale_at: datetime | None = None

    @property
    def id(self) -> str:
        return _slot_id(self.session_id, self.pos)


def _slot_id(session_id: str, pos: int) -> str:
    return f"{session_id}#{pos}"


def _slot(doc: Mapping[str, Any]) -> Slot:
    envelope = doc.get("envelope")
    return Slot(
        session_id=doc["session_id"], pos=int(doc["pos"]), run_id=doc["run_id"],
        state=SlotState(doc["state"]),
        request=RunRequested.model_validate(doc["request"]) if doc.get("request") else None,
        envelope=Envelope.model_validate(envelope) if envelope else None,
        stale_at=doc.get("stale_at"),
    )


def _done_update(now: datetime) -> Doc:
    return {"$set": {"state": SlotState.DONE.value, "expires_at": now + DONE_RETENTION},
            "$unset": {"request": ""}}


class RunQueue:
    """The ``run_queue`` (slots, session heads) and ``run_queue_runs`` collections."""

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        majority = WriteConcern(w="majority")
        self._db = db
        self._coll: AsyncCollection[Doc] = db.get_collection(RUN_QUEUE, write_concern=majority)
        self._runs: AsyncCollection[Doc] = db.get_collection(RUN_QUEUE_RUNS,
                                                             write_concern=majority)

    async def get(self, session_id: str, pos: int) -> Slot | None:
        if pos < 0:
            return None
        doc = await self._coll.find_one({"_id": _slot_id(session_id, pos)})
        return _slot(doc) if doc is not None else None

    async def slot_of(self, run_id: str) -> Slot | None:
        marker = await self._runs.find_one({"_id": run_id})
        if marker is None:
            return None
        doc = await self._coll.find_one({"_id": marker["slot"]})
        return _slot(doc) if doc is not None else None

    async def find(self, request: RunRequested) -> tuple[Slot | None, int]:
        """(the slot a replayed request already holds, else None; where its session's
        next free position probably is). Both reads go out together."""
        marker, head = await asyncio.gather(
            self._runs.find_one({"_id": request.run_id}),
            self._coll.find_one({"_id": f"head:{request.session_id}"}))
        if marker is None:
            return None, int(head["next"]) if head is not None else 0
        held = await self._coll.find_one({"_id": marker["slot"]})
        if held is None:  # ended and expired: a late replay
            return Slot(request.session_id, -1, request.run_id, SlotState.DONE, request,
                        envelope=None), -1
        return _slot(held), -1

    async def place(self, request: RunRequested, envelope: Envelope | None, pos: int, *,
                    now: datetime, admitted_until: datetime | None,
                    max_steps: int = 10_000) -> Slot:
        """Place the request in the first free position from ``pos``, ``admitted`` (until
        ``admitted_until``) if that is ``pos`` itself and the caller saw its predecessor
        ended, else ``waiting``; then link the run to it. A request whose slot was placed
        just before a crash finds it on the way (the head hint never passes it)."""
        doc: Doc = {}
        for candidate in range(pos, pos + max_steps):
            admitted = admitted_until is not None and candidate == pos
            doc = {
                "_id": _slot_id(request.session_id, candidate),
                "session_id": request.session_id, "pos": candidate, "run_id": request.run_id,
                "state": (SlotState.ADMITTED if admitted else SlotState.WAITING).value,
                "stale_at": admitted_until if admitted else None,
                "request": request.model_dump(mode="json"),
                "envelope": envelope.model_dump(mode="json") if envelope else None,
                "created_at": now,
            }
            try:
                await self._coll.insert_one(doc)
                break
            except DuplicateKeyError:
                taken = await self._coll.find_one({"_id": doc["_id"]})
                if taken is not None and taken["run_id"] == request.run_id:
                    doc = dict(taken)  # placed before a crash, or by a concurrent copy
                    break
        else:  # pragma: no cover - a session of 10,000 queued runs
            raise RuntimeError(f"session {request.session_id}: no free queue position")
        # Linked before anything else reads or admits this slot: a completion admits only
        # linked slots (Sequencer._start), so every started run's completion finds its slot.
        # And linked before the head hint moves past it: a retry after a failure in
        # between must find the slot through its link. Were the hint first, the retry
        # would take the next position and queue the run behind its own first slot.
        await self._link(request.run_id, doc["_id"], now=now)
        await self._coll.update_one(
            {"_id": f"head:{request.session_id}"},
            {"$max": {"next": int(doc["pos"]) + 1},
             "$set": {"expires_at": now + HEAD_RETENTION}},
            upsert=True)
        return _slot(doc)

    async def adopt(self, slot: Slot, *, now: datetime) -> Slot:
        """Link ``slot``'s run to it (again); the slot as it is now."""
        await self._link(slot.run_id, slot.id, now=now)
        return await self.get(slot.session_id, slot.pos) or slot

    async def _link(self, run_id: str, slot_id: str, *, now: datetime) -> None:
        await self._runs.update_one(
            {"_id": run_id},
            {"$set": {"slot": slot_id}, "$setOnInsert": {"expires_at": now + RUN_RETENTION}},
            upsert=True)

    async def finish(self, run_id: str, *, now: datetime) -> Slot | None:
        """A run ended: its slot is done if it held its session, cancelled if it was
        still waiting (its successors keep waiting for the run before it). The slot as
        it was (None: the run has none)."""
        slot = await self.slot_of(run_id)
        if slot is None:
            return None
        if slot.state is SlotState.WAITING:
            await self._set_state(slot, SlotState.CANCELLED, now=now)
        elif slot.state is SlotState.ADMITTED:
            await self.mark_done(slot, now=now)
        return slot

    async def cancel_waiting(self, run_id: str, *, now: datetime) -> Slot | None:
        """Cancel the run if it is still waiting for its turn; the slot if so (also when
        it was cancelled already: the caller's report is idempotent)."""
        slot = await self.slot_of(run_id)
        if slot is not None and slot.state is SlotState.CANCELLED:
            return slot  # a redelivered command: report it again (same message id)
        if slot is None or slot.state is not SlotState.WAITING:
            return None
        return slot if await self._set_state(slot, SlotState.CANCELLED, now=now) else None

    async def _set_state(self, slot: Slot, state: SlotState, *, now: datetime,
                         stale_at: datetime | None = None) -> bool:
        """Move a waiting slot on (to admitted or cancelled); False if it is no longer
        waiting. By ``_id`` only, so on FerretDB the check and the write are two steps
        (under the per-document lock in-process)."""
        update: Doc = {"$set": {"state": state.value, "updated_at": now}}
        if stale_at is not None:
            update["$set"]["stale_at"] = stale_at
        if state is SlotState.CANCELLED:  # kept while the runs ahead of it may still run
            update["$set"]["expires_at"] = now + RUN_RETENTION
        found = await update_by_id(self._db, RUN_QUEUE, slot.id, update,
                                   where={"state": SlotState.WAITING.value})
        return found is not None

    async def linked(self, slot: Slot) -> bool:
        """Whether the slot's run marker points at it yet (its request handler links it
        right after placing it)."""
        marker = await self._runs.find_one({"_id": slot.run_id})
        return marker is not None and marker.get("slot") == slot.id

    async def mark_admitted(self, slot: Slot, *, stale_at: datetime, now: datetime) -> bool:
        """Waiting -> admitted; False if it was cancelled (or admitted) meanwhile."""
        return await self._set_state(slot, SlotState.ADMITTED, now=now, stale_at=stale_at)

    async def mark_done(self, slot: Slot, *, now: datetime) -> None:
        await self._coll.update_one({"_id": slot.id}, _done_update(now))

    async def waiting(self, limit: int = 500) -> list[Slot]:
        """Waiting slots, oldest first: what the sweeper checks (a scan on FerretDB;
        a small collection, since ended slots expire within the hour)."""
        cursor = self._coll.find({"state": SlotState.WAITING.value}).sort("created_at", 1)
        return [_slot(d) async for d in cursor.limit(limit)]


Admit = Callable[[RunRequested, Envelope | None], Awaitable[None]]
"""Assemble the run's context and publish its ``RunReady`` (deterministic id)."""


class Sequencer:
    """Decides when a session's next run may start; see the module docstring."""

    def __init__(
        self, queue: RunQueue, admit: Admit, *,
        allowed: Callable[[RunRequested], timedelta],
        clock: Callable[[], datetime],
        on_event: Callable[[str], None] = lambda _kind: None,
    ) -> None:
        self._queue, self._admit, self._allowed, self._clock = queue, admit, allowed, clock
        self._on_event = on_event

    async def requested(self, request: RunRequested, envelope: Envelope | None) -> bool:
        """Enqueue the request; start it now if its session is free. True if started
        (or, for a replay of a started run, started again: same ``RunReady`` id).

        The predecessor is read *before* placing the slot too: when it has ended (the
        common case) the slot goes in ``admitted`` and the run starts at once, with no
        second read and no second write on the run's critical path.
        """
        held, pos = await self._queue.find(request)
        if held is None:
            held = await self._place(request, envelope, pos)
        if held.state in (SlotState.DONE, SlotState.CANCELLED):
            log.info("run %s requested again after it ended; nothing to do", request.run_id)
            return False
        if held.state is SlotState.ADMITTED:
            await self._start(held, linked=True)
            return True
        # Waiting: read the predecessor again, now that this slot is in place (a completion
        # that marked it done before this read finds this slot; one after it is seen here).
        before = await self._queue.get(held.session_id, held.pos - 1)
        if await self._ended(held.session_id, held.run_id, before):
            await self._start(held, linked=True)
            return True
        self._on_event("queued")
        log.info("run %s waits for the previous run of session %s", request.run_id,
                 request.session_id)
        return False

    async def _place(self, request: RunRequested, envelope: Envelope | None, pos: int) -> Slot:
        """Place a request that holds no slot yet, ``admitted`` if its session is free."""
        before = await self._queue.get(request.session_id, pos - 1)
        now = self._clock()
        if before is not None and before.run_id == request.run_id:
            # Another copy of this request (a consumer that lost the partition in a
            # rebalance mid-handler) placed it after this one read "no link" but before
            # it read the head: this is the run's own slot, not a run ahead of it.
            return await self._queue.adopt(before, now=now)
        free = await self._ended(request.session_id, request.run_id, before)
        return await self._queue.place(
            request, envelope, pos, now=now,
            admitted_until=now + self._allowed(request) if free else None)

    async def ended(self, run_id: str) -> None:
        """A run ended (any status): free its session for the next run, if one waits.

        A run that ended while still waiting (cancelled in the queue) frees nothing:
        the run ahead of it still holds the session.
        """
        slot = await self._queue.finish(run_id, now=self._clock())
        if slot is None or slot.state in (SlotState.WAITING, SlotState.CANCELLED):
            return
        await self._start_after(slot)

    async def cancel(self, run_id: str) -> Slot | None:
        """Cancel a run still waiting for its turn; its slot if it was (the caller
        reports the run cancelled). None: not waiting (started, ended or unknown)."""
        return await self._queue.cancel_waiting(run_id, now=self._clock())

    async def _start_after(self, slot: Slot) -> None:
        """Start the run after ``slot`` (which has ended), passing over cancelled ones and
        a second slot of the same run (two copies of a request raced into two)."""
        successor = await self._queue.get(slot.session_id, slot.pos + 1)
        while successor is not None and (
                successor.run_id == slot.run_id or successor.state is SlotState.CANCELLED):
            if successor.state is not SlotState.DONE:
                await self._queue.mark_done(successor, now=self._clock())
            successor = await self._queue.get(slot.session_id, successor.pos + 1)
        if successor is not None and successor.state is not SlotState.DONE:
            await self._start(successor)

    async def sweep(self) -> int:
        """Start waiting runs whose predecessor ended or outlived its deadline."""
        started = 0
        for slot in await self._queue.waiting():
            before = await self._queue.get(slot.session_id, slot.pos - 1)
            if await self._ended(slot.session_id, slot.run_id, before):
                started += await self._start(slot)
        return started

    async def _ended(self, session_id: str, run_id: str, before: Slot | None,
                     depth: int = 0) -> bool:
        """Whether ``before``, the slot ahead of run ``run_id``'s, lets it start: absent
        (none, or ended long ago), done, admitted and past its time (abandoned), or
        cancelled with its own predecessor ended (its turn has passed)."""
        if before is None or before.state is SlotState.DONE:
            return True
        now = self._clock()
        if before.state is SlotState.CANCELLED and depth < 1000:
            earlier = await self._queue.get(session_id, before.pos - 1)
            if not await self._ended(session_id, before.run_id, earlier, depth + 1):
                return False
            await self._queue.mark_done(before, now=now)
            return True
        if before.state is SlotState.ADMITTED and before.stale_at and before.stale_at <= now:
            log.warning("run %s of session %s never ended (past its deadline); starting %s",
                        before.run_id, session_id, run_id)
            self._on_event("abandoned")
            await self._queue.mark_done(before, now=now)
            return True
        return False

    async def _start(self, slot: Slot, *, linked: bool = False) -> bool:
        """Admit (if waiting) and publish the run's ``RunReady``; False if not started.

        A waiting slot whose run is not linked to it yet is left to its own request
        handler, which links it and then reads the predecessor this caller has just
        ended: it will start the run itself.
        """
        if slot.request is None:  # pragma: no cover - only done slots drop their request
            return False
        if slot.state is SlotState.CANCELLED:
            return False
        if slot.state is SlotState.WAITING:
            if not linked and not await self._queue.linked(slot):
                return False
            now = self._clock()
            if not await self._queue.mark_admitted(
                    slot, stale_at=now + self._allowed(slot.request), now=now):
                return False  # cancelled (or started by another caller) meanwhile
        await self._admit(slot.request, slot.envelope)
        return True
