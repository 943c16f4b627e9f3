"""MongoDB plumbing: the client, indexes declared as data, and optimistic concurrency.

Each service's ``store.py`` declares its collections' indexes as
:class:`IndexSpec` values and calls :func:`ensure_indexes` at start, so the
indexes a service relies on are visible in one place and always exist.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, OperationFailure

from shared.errors import ConflictError
from shared.settings import MongoSettings

__all__ = [
    "Doc",
    "IndexSpec",
    "ProcessedLedger",
    "document_lock",
    "ensure_indexes",
    "make_client",
    "matches",
    "sweep_expired",
    "update_by_id",
    "update_if_version",
    "update_versioned",
]

Doc = dict[str, Any]

log = logging.getLogger("mindstream.mongo")


def make_client(settings: MongoSettings, app_name: str) -> AsyncMongoClient[Doc]:
    """A client with bounded timeouts, so a down database fails handlers fast."""
    return AsyncMongoClient(
        settings.uri.get_secret_value(),
        appname=app_name,
        serverSelectionTimeoutMS=settings.timeout_ms,
        connectTimeoutMS=settings.timeout_ms,
        socketTimeoutMS=settings.timeout_ms * 2,
        tz_aware=True,
    )


@dataclass(frozen=True)
class IndexSpec:
    keys: Sequence[tuple[str, int]]
    unique: bool = False
    name: str | None = None
    expire_after_seconds: int | None = None
    partial_filter: Mapping[str, Any] | None = field(default=None)

    def options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {"unique": self.unique}
        if self.name:
            opts["name"] = self.name
        if self.expire_after_seconds is not None:
            opts["expireAfterSeconds"] = self.expire_after_seconds
        if self.partial_filter is not None:
            opts["partialFilterExpression"] = dict(self.partial_filter)
        return opts


NOT_IMPLEMENTED = 238  # the server's code for "this feature is not supported here"


async def ensure_indexes(db: AsyncDatabase[Doc], indexes: Mapping[str, Sequence[IndexSpec]],
                         ) -> list[tuple[str, IndexSpec]]:
    """Create every declared index (idempotent: existing ones are left as they are).

    Returns the TTL indexes the server could not create (FerretDB has no TTL
    indexes): the caller expires those documents itself with
    :func:`sweep_expired`, so retention holds on every backend.
    """
    unsupported: list[tuple[str, IndexSpec]] = []
    for collection, specs in indexes.items():
        for spec in specs:
            try:
                await db[collection].create_index(list(spec.keys), **spec.options())
            except OperationFailure as exc:
                if exc.code != NOT_IMPLEMENTED or spec.expire_after_seconds is None:
                    raise
                log.warning("%s: TTL indexes unsupported by this server; expiring by sweep instead",
                            collection)
                unsupported.append((collection, spec))
    return unsupported


async def sweep_expired(db: AsyncDatabase[Doc], collection: str, spec: IndexSpec) -> int:
    """Delete what a TTL index would have: documents whose date field is past its age."""
    assert spec.expire_after_seconds is not None
    field_name = spec.keys[0][0]
    cutoff = datetime.now(UTC) - timedelta(seconds=spec.expire_after_seconds)
    result = await db[collection].delete_many({field_name: {"$lt": cutoff}})
    return int(result.deleted_count)


async def update_versioned(
    db: AsyncDatabase[Doc], collection: str, doc_id: Any, expected_version: int,
    update: Mapping[str, Any],
) -> Doc:
    """Apply ``update`` only if the document is still at ``expected_version``.

    The version is bumped in the same write. Zero matched documents means
    another writer got there first: :class:`ConflictError` (transient), so the
    caller re-reads and retries.
    """
    update = dict(update)
    update.setdefault("$inc", {})
    update["$inc"] = {**update["$inc"], "version": 1}
    # On FerretDB the check is not atomic across processes (see update_by_id).
    result = await update_by_id(db, collection, doc_id, update, where={"version": expected_version})
    if result is None:
        raise ConflictError(f"{collection}/{doc_id}: version {expected_version} is stale")
    return result


async def update_if_version(
    db: AsyncDatabase[Doc], collection: str, doc_id: Any, version: int, update: Mapping[str, Any],
) -> bool:
    """Apply ``update`` only while the document is at ``version``, without bumping it.

    For bookkeeping on a versioned document (marking its outbox sent) that must
    never overwrite a newer version.
    """
    return await update_by_id(db, collection, doc_id, update, where={"version": version}) is not None


async def update_by_id(
    db: AsyncDatabase[Doc], collection: str, doc_id: Any, update: Mapping[str, Any], *,
    where: Mapping[str, Any] | None = None, upsert: bool = False,
) -> Doc | None:
    """Apply ``update`` to document ``doc_id`` if it also matches ``where``; the
    document after the update, or ``None`` when nothing matched.

    Use it for every conditional single-document write (guards like
    ``{"seq": {"$lt": n}}``): on MongoDB it is one atomic ``findAndModify``
    on ``{_id, **where}``; on FerretDB, where only a bare ``{_id}`` filter uses
    an index, the guard is checked here (:func:`matches`) between a read and a
    write by ``_id``, under the per-document lock. With ``upsert``, a missing
    document is created (``where``'s fields are not copied into it: use
    ``$setOnInsert``) and an existing one that fails ``where`` raises
    :class:`DuplicateKeyError`, as MongoDB does.
    """
    where = dict(where or {})
    coll = db[collection]
    async with document_lock(db.name, collection, doc_id):
        if await _applies_guards_atomically(db):
            found: Doc | None = await coll.find_one_and_update(
                {"_id": doc_id, **where}, dict(update), upsert=upsert,
                return_document=ReturnDocument.AFTER)
            return found
        current = await coll.find_one({"_id": doc_id})
        if current is not None and not matches(current, where):
            if upsert:
                raise DuplicateKeyError(f"{collection}/{doc_id}: exists and does not match {where}")
            return None
        if current is None and not upsert:
            return None
        after: Doc | None = await coll.find_one_and_update(
            {"_id": doc_id}, dict(update), upsert=upsert, return_document=ReturnDocument.AFTER)
        return after


def matches(doc: Mapping[str, Any], where: Mapping[str, Any]) -> bool:
    """MongoDB's query semantics for the guards :func:`update_by_id` is given:
    equality (an array field matches if it contains the value), ``$ne``,
    ``$lt`` ``$lte`` ``$gt`` ``$gte``, ``$in`` ``$nin``, ``$exists``, ``$or``,
    dotted paths. Anything else raises ``ValueError`` rather than guess."""
    for key, cond in where.items():
        if key == "$or":
            if not any(matches(doc, branch) for branch in cond):
                return False
            continue
        if key.startswith("$"):
            raise ValueError(f"unsupported query operator {key}")
        present, value = _lookup(doc, key)
        if isinstance(cond, Mapping) and cond and all(str(k).startswith("$") for k in cond):
            if not all(_holds(op, arg, present, value) for op, arg in cond.items()):
                return False
        elif not _equals(value, cond, present):
            return False
    return True


def _lookup(doc: Mapping[str, Any], path: str) -> tuple[bool, Any]:
    value: Any = doc
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return False, None
        value = value[part]
    return True, value


def _equals(value: Any, expected: Any, present: bool = True) -> bool:
    if expected is None:
        return not present or value is None
    if isinstance(value, list) and not isinstance(expected, list):
        return expected in value
    return bool(value == expected)


def _holds(op: str, arg: Any, present: bool, value: Any) -> bool:
    if op in _ORDER:
        if not present or value is None:
            return False
        try:
            return bool(_ORDER[op](value, arg))
        except TypeError:
            return False  # MongoDB compares only within a type bracket
    test = _MEMBERSHIP.get(op)
    if test is None:
        raise ValueError(f"unsupported query operator {op}")
    return test(arg, present, value)


_MEMBERSHIP: dict[str, Callable[[Any, bool, Any], bool]] = {
    "$exists": lambda arg, present, _value: present is bool(arg),
    "$ne": lambda arg, present, value: not _equals(value, arg, present),
    "$in": lambda arg, present, value: any(_equals(value, a, present) for a in arg),
    "$nin": lambda arg, present, value: not any(_equals(value, a, present) for a in arg),
}
_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "$lt": lambda a, b: a < b, "$lte": lambda a, b: a <= b,
    "$gt": lambda a, b: a > b, "$gte": lambda a, b: a >= b,
}


_SERVER_KIND: weakref.WeakKeyDictionary[AsyncMongoClient[Doc], bool] = weakref.WeakKeyDictionary()


async def _applies_guards_atomically(db: AsyncDatabase[Doc]) -> bool:
    """False on FerretDB 1.x, which neither applies ``{_id, <guard>}`` filters
    atomically nor pushes them down to SQL (it scans the whole collection and
    filters in Go: O(n) per write). There the check is a read by ``_id`` alone
    followed by a write by ``_id`` alone, both index lookups, under the same
    per-document lock: no weaker than what FerretDB does itself, and constant
    time. Asked once per client (``buildInfo`` names FerretDB)."""
    client = db.client
    known = _SERVER_KIND.get(client)
    if known is None:
        info = await client.admin.command("buildInfo")
        known = _SERVER_KIND[client] = "ferretdbVersion" not in info
    return known


_LOCKS: weakref.WeakValueDictionary[tuple[str, str, str], asyncio.Lock] = (
    weakref.WeakValueDictionary())


def document_lock(database: str, collection: str, doc_id: Any) -> asyncio.Lock:
    """The in-process lock every conditional write of one document takes (not reentrant)."""
    key = (database, collection, repr(doc_id))
    lock = _LOCKS.get(key)
    if lock is None:
        lock = asyncio.Lock()
        _LOCKS[key] = lock
    return lock


class ProcessedLedger:
    """Which messages a consumer group has already processed (unique on message id).

    Architecture rule 3: a redelivered message (after a crash between effect
    and commit, or a rebalance) is recognised and skipped. Entries expire
    after ``ttl_seconds`` -- longer than any redelivery window -- so the
    ledger does not grow without bound.
    """

    COLLECTION = "processed_messages"
    INDEXES = (IndexSpec([("at", 1)], name="ttl_at", expire_after_seconds=7 * 24 * 3600),)

    def __init__(self, db: AsyncDatabase[Doc], group: str) -> None:
        self._coll = db[self.COLLECTION]
        self._group = group

    def _key(self, message_id: str) -> str:
        return f"{self._group}/{message_id}"

    async def seen(self, message_id: str) -> bool:
        return await self._coll.find_one({"_id": self._key(message_id)}, {"_id": 1}) is not None

    async def mark(self, message_id: str, topic: str, partition: int, offset: int) -> None:
        try:
            await self._coll.insert_one({
                "_id": self._key(message_id), "topic": topic, "partition": partition,
                "offset": offset, "at": datetime.now(UTC),
            })
        except DuplicateKeyError:
            pass  # marked by an earlier delivery whose commit was lost: same outcome
