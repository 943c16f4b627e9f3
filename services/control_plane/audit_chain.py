"""The append-only, hash-chained audit log: appending safely and verifying it.

Each record sits in a chain (the event's ``chain`` field) at a sequence
number ``seq`` (1, 2, 3... per chain, unique with the chain) and carries
``prev_hash`` (the previous record's hash; 64 zeros for the first) and
``hash = sha256(prev_hash + canonical JSON of the event)``. Editing a
record breaks its hash, deleting one leaves a gap in ``seq`` (or, at the
end, a head that points past the last record), and moving records breaks a
``prev_hash`` link -- :func:`verify` names the first record where that happens.

Appending is safe with several replicas and partitions at once, without
transactions (FerretDB has none): the writer reads the chain's head
document, inserts the record at ``head.seq + 1`` (the unique (chain, seq)
index refuses a second writer), then moves the head forward with optimistic
concurrency. A writer that finds the seq taken helps move the head to the
record it found and tries again; a crash between insert and head move is
repaired the same way by the next writer. The event id is the record's
``_id``: a redelivered event is recognised and not appended twice.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from schemas.audit import AuditEvent
from services.control_plane.errors import AuditRecordError, ChainContention
from services.control_plane.store import AUDIT_CHAINS, AUDIT_LOG
from shared.mongo import Doc, document_lock

__all__ = [
    "GENESIS_HASH",
    "AppendResult",
    "BrokenRecord",
    "ChainChecker",
    "VerifyReport",
    "append",
    "canonical_json",
    "check_chain",
    "record_hash",
    "verify",
]

GENESIS_HASH = "0" * 64
_MAX_ATTEMPTS = 20
_BATCH = 500


def canonical_json(document: Any) -> str:
    """Sorted keys, no spaces, UTF-8 kept: the same bytes from any writer or verifier."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def record_hash(prev_hash: str, event: Mapping[str, Any]) -> str:
    return hashlib.sha256((prev_hash + canonical_json(event)).encode()).hexdigest()


def _indexed(event: Mapping[str, Any]) -> Doc:
    """Queryable copies of the event's fields; :func:`check_chain` checks they still agree."""
    return {
        "chain": event["chain"],
        "time": datetime.fromisoformat(event["time"]).astimezone(UTC),
        "actor_kind": event["actor"]["kind"],
        "actor_id": event["actor"]["id"],
        "action": event["action"],
        "target_kind": event["target"]["kind"],
        "target_id": event["target"]["id"],
        "outcome": event["outcome"],
    }


@dataclass(frozen=True)
class AppendResult:
    record: Doc
    created: bool


async def append(db: AsyncDatabase[Doc], event: AuditEvent, *, now: datetime | None = None,
                 ) -> AppendResult:
    """Append ``event`` to its chain once; a repeat returns the stored record."""
    payload = event.model_dump(mode="json")
    chain = event.chain
    # One appender per chain in this process: concurrent appends would only race for
    # the same seq, and each lost race costs a scan of the log (_advance_head).
    async with document_lock(db.name, AUDIT_CHAINS, chain):
        return await _append(db, event, payload, now)


async def _append(db: AsyncDatabase[Doc], event: AuditEvent, payload: Doc,
                  now: datetime | None) -> AppendResult:
    log, heads = db[AUDIT_LOG], db[AUDIT_CHAINS]
    chain = event.chain
    for _ in range(_MAX_ATTEMPTS):
        existing = await log.find_one({"_id": event.event_id})
        if existing is not None:
            return AppendResult(existing, created=False)
        head = await _head(db, chain)
        seq = int(head["seq"]) + 1
        record: Doc = {
            "_id": event.event_id, "seq": seq, "prev_hash": head["hash"],
            "hash": record_hash(head["hash"], payload), "event": payload,
            **_indexed(payload), "recorded_at": now or datetime.now(UTC),
        }
        try:
            await log.insert_one(record)
        except DuplicateKeyError:
            # Either the same event landed meanwhile (next loop returns it) or another
            # writer took this seq: help its head forward, then try the next seq.
            await _advance_head(db, chain, head)
            continue
        except OverflowError as exc:
            raise AuditRecordError(f"audit event {event.event_id} cannot be stored: {exc}") from exc
        await heads.update_one(
            {"_id": chain, "version": head["version"]},
            {"$set": {"seq": seq, "hash": record["hash"]}, "$inc": {"version": 1}},
        )
        return AppendResult(record, created=True)
    raise ChainContention(f"chain {chain!r}: lost the race for the next seq {_MAX_ATTEMPTS} times")


async def _head(db: AsyncDatabase[Doc], chain: str) -> Doc:
    heads = db[AUDIT_CHAINS]
    head = await heads.find_one({"_id": chain})
    if head is None:
        try:
            await heads.insert_one({"_id": chain, "seq": 0, "hash": GENESIS_HASH, "version": 0})
        except DuplicateKeyError:
            pass
        head = await heads.find_one({"_id": chain})
    if head is None:  # pragma: no cover - only if someone deletes it between two reads
        raise ChainContention(f"chain {chain!r}: head document vanished")
    return head


async def _advance_head(db: AsyncDatabase[Doc], chain: str, head: Doc) -> None:
    """Move a lagging head over records already appended after it (crash or race repair)."""
    seq, last_hash = int(head["seq"]), head["hash"]
    async for record in db[AUDIT_LOG].find({"chain": chain, "seq": {"$gt": seq}}).sort("seq", 1):
        if record["seq"] != seq + 1:
            break
        seq, last_hash = record["seq"], record["hash"]
    if seq != head["seq"]:
        await db[AUDIT_CHAINS].update_one(
            {"_id": chain, "version": head["version"]},
            {"$set": {"seq": seq, "hash": last_hash}, "$inc": {"version": 1}},
        )


# -- verification -------------------------------------------------------------


@dataclass(frozen=True)
class BrokenRecord:
    chain: str
    seq: int
    event_id: str | None
    problem: str

    def line(self) -> str:
        who = f" (event {self.event_id})" if self.event_id else ""
        return f"chain {self.chain!r} seq {self.seq}{who}: {self.problem}"


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    checked: int
    first_broken: BrokenRecord | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class ChainChecker:
    """Checks one chain's records fed in seq order, without holding them all in memory."""

    def __init__(self, chain: str) -> None:
        self.chain = chain
        self.checked = 0
        self._expected = 1
        self._prev_hash = GENESIS_HASH

    def feed(self, record: Mapping[str, Any]) -> BrokenRecord | None:
        seq, event_id = int(record.get("seq", -1)), str(record.get("_id"))
        self.checked += 1
        expected = self._expected
        if seq > expected:
            missing = f"seq {expected}" if seq == expected + 1 else f"seqs {expected}-{seq - 1}"
            return BrokenRecord(self.chain, expected, event_id,
                                f"{missing} missing before this record (deleted)")
        if seq < expected:
            return BrokenRecord(self.chain, seq, event_id, "seq repeated or out of order")
        problem = _record_problem(record, self._prev_hash)
        if problem:
            return BrokenRecord(self.chain, seq, event_id, problem)
        self._prev_hash, self._expected = record["hash"], expected + 1
        return None

    def finish(self, head_seq: int | None) -> BrokenRecord | None:
        """The head remembers how far the chain went: records missing at the end show here."""
        if head_seq is not None and head_seq >= self._expected:
            return BrokenRecord(self.chain, self._expected, None,
                                f"records {self._expected}-{head_seq} missing at the end (deleted)")
        return None


def check_chain(chain: str, records: Iterable[Mapping[str, Any]], head_seq: int | None = None,
                ) -> tuple[int, BrokenRecord | None]:
    """Check records of one chain, in seq order; returns (records checked, first broken)."""
    checker = ChainChecker(chain)
    for record in records:
        broken = checker.feed(record)
        if broken is not None:
            return checker.checked, broken
    return checker.checked, checker.finish(head_seq)


def _record_problem(record: Mapping[str, Any], prev_hash: str) -> str | None:
    event = record.get("event")
    if not isinstance(event, Mapping):
        return "event body missing (edited)"
    if record.get("prev_hash") != prev_hash:
        return "link to the previous record broken (reordered, edited or replaced)"
    if record_hash(prev_hash, event) != record.get("hash"):
        return "content does not match its hash (edited)"
    return _copies_problem(record, event)


def _copies_problem(record: Mapping[str, Any], event: Mapping[str, Any]) -> str | None:
    """The queryable copies must agree with the hashed event, or queries would lie."""
    try:
        indexed = _indexed(event)
    except (KeyError, TypeError, ValueError):
        return "event body malformed (edited)"
    indexed["_id"] = event.get("event_id")
    for name, value in indexed.items():
        stored = record.get(name)
        same_instant = (name == "time" and isinstance(stored, datetime)
                        and abs(stored.astimezone(UTC) - value) < timedelta(milliseconds=1))
        if not same_instant and stored != value:
            return f"stored field {name!r} differs from the hashed event (edited)"
    return None


async def verify(db: AsyncDatabase[Doc], chain: str | None = None) -> VerifyReport:
    """Walk every chain (or one) from its first record; stop at the first broken record."""
    heads = {h["_id"]: int(h["seq"]) async for h in db[AUDIT_CHAINS].find({})}
    chains = [chain] if chain is not None else sorted(
        set(heads) | set(await db[AUDIT_LOG].distinct("chain")))
    total = 0
    for name in chains:
        checker = ChainChecker(name)
        broken: BrokenRecord | None = None
        async for record in _records(db, name):
            broken = checker.feed(record)
            if broken is not None:
                break
        else:
            broken = checker.finish(heads.get(name))
        total += checker.checked
        if broken is not None:
            return VerifyReport(ok=False, checked=total, first_broken=broken)
    return VerifyReport(ok=True, checked=total)


async def _records(db: AsyncDatabase[Doc], chain: str) -> AsyncIterator[Doc]:
    """A chain's records in seq order, fetched in pages (FerretDB cursors stay small)."""
    last = 0
    while True:
        page = await db[AUDIT_LOG].find({"chain": chain, "seq": {"$gt": last}}).sort(
            "seq", 1).limit(_BATCH).to_list()
        for record in page:
            yield record
        if len(page) < _BATCH:
            return
        last = int(page[-1]["seq"])
