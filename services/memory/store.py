"""The memory service's MongoDB collections; indexes declared as data.

Collections (no other service reads them):

* ``sessions`` — one per session: running ``summary``, ``summarized_through``
  (the summary covers messages with ``seq`` below it), ``next_seq``, the recent
  runs recorded (``run_id`` → first ``seq``), and a cached ``tail``: the
  messages the summary does not cover yet. A context assembly is one read of
  this document, whatever the session's length. ``version`` guards every
  change (optimistic concurrency, architecture rule 4).
* ``messages`` — the durable, append-only history: one document per chat
  message, ``_id`` ``<session_id>:<seq>``, unique ``(session_id, seq)`` and unique
  ``(run_id, idx)``, so a turn is recorded once and never interleaved (see
  :meth:`MemoryStore.record_turn`).
* ``memories`` — durable facts about a user; ``_id`` is the deterministic
  memory id, ``version`` guards updates.
* ``knowledge_documents`` — one per document: content hash, title, labels,
  text (the durable copy of the corpus); ``knowledge_chunks`` — its chunks
  (and embeddings); ``knowledge_meta`` — the corpus version counter every
  replica checks to refresh its in-memory search index.

Hot paths read and write by ``_id`` only: FerretDB (on SQLite in particular)
does not use secondary indexes for most queries, and MongoDB is fastest that
way too. Writes use ``w="majority"`` (FerretDB and standalone MongoDB accept it), so an
acknowledged write survives a primary failover before the offset is committed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError
from pymongo.write_concern import WriteConcern

from services.memory.chunking import Chunk
from services.memory.errors import InvalidInputError
from services.memory.learning import Memory, MemoryUpdate
from shared.errors import ConflictError
from shared.mongo import Doc, IndexSpec, update_if_version, update_versioned

__all__ = [
    "CHUNKS",
    "DOCUMENTS",
    "INDEXES",
    "MAX_TAIL_BYTES",
    "MAX_TAIL_MESSAGES",
    "MEMORIES",
    "MESSAGES",
    "META",
    "RECENT_RUNS",
    "SESSIONS",
    "DocumentInfo",
    "MemoryStore",
    "SessionState",
    "StoredMessage",
    "Turn",
]

SESSIONS = "sessions"
MESSAGES = "messages"
MEMORIES = "memories"
DOCUMENTS = "knowledge_documents"
CHUNKS = "knowledge_chunks"
META = "knowledge_meta"

INDEXES: dict[str, tuple[IndexSpec, ...]] = {
    SESSIONS: (IndexSpec([("user_id", 1)], name="user"),),
    MESSAGES: (
        IndexSpec([("session_id", 1), ("seq", 1)], unique=True, name="session_seq"),
        IndexSpec([("run_id", 1), ("idx", 1)], unique=True, name="run_idx"),
    ),
    MEMORIES: (IndexSpec([("user_id", 1), ("topic", 1)], name="user_topic"),),
    DOCUMENTS: (IndexSpec([("doc_hash", 1)], name="doc_hash"),),
    CHUNKS: (IndexSpec([("document_id", 1), ("index", 1)], name="document_chunk"),),
}

_CORPUS = "corpus"
_MAJORITY = WriteConcern(w="majority")
_DUPLICATE_KEY = 11000


@dataclass(frozen=True)
class StoredMessage:
    """A recorded chat message; ``chat`` is the OpenAI-style dict, with an ``id``."""

    seq: int
    run_id: str
    idx: int
    chat: dict[str, Any]


@dataclass(frozen=True)
class SessionState:
    session_id: str
    user_id: str | None
    summary: str | None
    summarized_through: int
    next_seq: int
    version: int
    tail: tuple[StoredMessage, ...] = ()
    recent_runs: tuple[tuple[str, int, int], ...] = ()

    def run(self, run_id: str) -> tuple[int, int] | None:
        """``(start, size)`` of a recently recorded run, if it is one."""
        for rid, start, size in self.recent_runs:
            if rid == run_id:
                return start, size
        return None


@dataclass(frozen=True)
class Turn:
    """Where a run's messages sit in its session; ``created`` is False on a replay."""

    run_id: str
    start: int
    size: int
    created: bool
    learned: bool
    session: SessionState | None = None
    """The session as this call last saw it (after its own write, when it wrote)."""


@dataclass(frozen=True)
class DocumentInfo:
    document_id: str
    source: str
    title: str | None
    metadata: dict[str, str]
    doc_hash: str | None
    deleted: bool
    published_at: datetime | None


RECENT_RUNS = 256
"""Runs remembered in the session document for replay detection; older replays are
recognised by their first message's ``_id`` instead."""
MAX_TAIL_MESSAGES = 1000
MAX_TAIL_BYTES = 4_000_000
"""Bounds of the cached tail (a MongoDB document holds at most 16 MB). Past them the
oldest cached messages are dropped from the cache only; ``messages`` keeps them."""


def _chat(session_id: str, seq: int, message: Mapping[str, Any]) -> dict[str, Any]:
    chat: dict[str, Any] = {
        "id": f"{session_id}:{seq}",
        "role": message["role"],
        "content": message.get("content"),
    }
    if message.get("tool_calls"):
        chat["tool_calls"] = list(message["tool_calls"])
    if message.get("tool_call_id") is not None:
        chat["tool_call_id"] = message["tool_call_id"]
    if message.get("name") is not None:
        chat["name"] = message["name"]
    return chat


def _mid(session_id: str, seq: int) -> str:
    return f"{session_id}:{seq}"


def _message_doc(
    session_id: str, run_id: str, user_id: str, agent_id: str, idx: int, start: int,
    size: int, message: Mapping[str, Any], at: datetime,
) -> Doc:
    return {
        "_id": _mid(session_id, start + idx),
        "session_id": session_id,
        "seq": start + idx,
        "run_id": run_id,
        "idx": idx,
        "turn_start": start,
        "turn_size": size,
        "user_id": user_id,
        "agent_id": agent_id,
        "role": message["role"],
        "content": message.get("content"),
        "tool_calls": list(message.get("tool_calls") or []),
        "tool_call_id": message.get("tool_call_id"),
        "name": message.get("name"),
        "at": at,
    }


def _stored_doc(doc: Mapping[str, Any]) -> StoredMessage:
    seq = int(doc["seq"])
    return StoredMessage(seq, doc["run_id"], int(doc["idx"]), _chat(doc["session_id"], seq, doc))


def _tail_entry(m: StoredMessage) -> Doc:
    return {"seq": m.seq, "run_id": m.run_id, "idx": m.idx, "chat": m.chat}


def _stored(doc: Mapping[str, Any]) -> StoredMessage:
    return StoredMessage(int(doc["seq"]), doc["run_id"], int(doc["idx"]), dict(doc["chat"]))


def _bounded(tail: list[StoredMessage]) -> list[StoredMessage]:
    tail = tail[-MAX_TAIL_MESSAGES:]
    sizes = [len(json.dumps(m.chat, default=str)) for m in tail]
    total = sum(sizes)
    first = 0
    while total > MAX_TAIL_BYTES and first < len(tail) - 1:
        total -= sizes[first]
        first += 1
    return tail[first:]


def _session(doc: Mapping[str, Any]) -> SessionState:
    tail = sorted((_stored(t) for t in doc.get("tail") or ()), key=lambda m: m.seq)
    return SessionState(
        session_id=doc["_id"],
        user_id=doc.get("user_id"),
        summary=doc.get("summary"),
        summarized_through=int(doc.get("summarized_through", 0)),
        next_seq=int(doc.get("next_seq", 0)),
        version=int(doc.get("version", 0)),
        tail=tuple(tail),
        recent_runs=tuple(
            (r["run_id"], int(r["start"]), int(r["size"])) for r in doc.get("recent_runs") or ()
        ),
    )


def _memory_doc(memory: Memory) -> Doc:
    doc = memory.model_dump(mode="python")
    doc["_id"] = doc.pop("id")
    doc["history"] = [dict(h) for h in doc["history"]]
    return doc


def _memory(doc: Mapping[str, Any]) -> Memory:
    data = dict(doc)
    data["id"] = data.pop("_id")
    return Memory.model_validate(data)


def _only_duplicates(exc: BulkWriteError) -> bool:
    errors = exc.details.get("writeErrors", [])
    return bool(errors) and all(e.get("code") == _DUPLICATE_KEY for e in errors)


class MemoryStore:
    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.db = db
        self._sessions = self._coll(SESSIONS)
        self._messages = self._coll(MESSAGES)
        self._memories = self._coll(MEMORIES)
        self._documents = self._coll(DOCUMENTS)
        self._chunks = self._coll(CHUNKS)
        self._meta = self._coll(META)

    def _coll(self, name: str) -> AsyncCollection[Doc]:
        return self.db.get_collection(name, write_concern=_MAJORITY)

    # -- sessions -------------------------------------------------------------

    async def get_session(self, session_id: str) -> SessionState | None:
        doc = await self._sessions.find_one({"_id": session_id})
        return _session(doc) if doc is not None else None

    async def ensure_session(self, session_id: str, *, user_id: str, now: datetime) -> SessionState:
        """The session's state, created on first use (concurrent creators agree).

        A session this call created is the document it inserted: no read back.
        """
        state = await self.get_session(session_id)
        if state is not None:
            return state
        doc: Doc = {
            "_id": session_id, "user_id": user_id, "summary": None,
            "summarized_through": 0, "next_seq": 0, "tail": [], "recent_runs": [],
            "version": 0, "created_at": now,
        }
        try:
            await self._sessions.insert_one(doc)
        except DuplicateKeyError:
            pass  # another writer created it first: read what it wrote
        else:
            return _session(doc)
        state = await self.get_session(session_id)
        if state is None:  # pragma: no cover - only if deleted concurrently
            raise ConflictError(f"session {session_id} vanished while being created")
        return state

    async def save_summary(
        self, state: SessionState, *, summary: str, summarized_through: int, now: datetime
    ) -> SessionState:
        """Store a new summary and drop what it covers from the cached tail, if nobody
        else changed the session since ``state`` was read (else ``ConflictError``)."""
        tail = [_tail_entry(m) for m in state.tail if m.seq >= summarized_through]
        doc = await update_versioned(
            self.db, SESSIONS, state.session_id, state.version,
            {"$set": {"summary": summary, "summarized_through": summarized_through,
                      "tail": tail, "updated_at": now}},
        )
        return _session(doc)

    # -- messages -------------------------------------------------------------

    async def record_turn(
        self,
        *,
        session_id: str,
        run_id: str,
        user_id: str,
        agent_id: str,
        messages: Sequence[Mapping[str, Any]],
        at: datetime,
        max_steps: int = 10_000,
    ) -> Turn:
        """Record a run's messages once, contiguously, after the session's last turn.

        The claim is an insert, because a unique-index insert is atomic on
        every MongoDB-wire server (FerretDB 1.x does not apply a conditional
        update atomically, so a versioned update alone cannot allocate). The
        run's first message goes in at ``_id`` ``<session>:<seq>``, starting
        from the session's ``next_seq`` hint: unique ``_id`` means one turn per
        ``seq``, unique ``(run_id, idx)`` means one claim per run. On a clash
        the message found there says where its turn ends, and the claim moves
        past it. The rest of the turn then fills the claimed range, and the
        session's cached tail is updated. Every step is repeatable, so a crash
        anywhere is repaired by the redelivery.
        """
        if not messages:
            raise InvalidInputError(f"run {run_id} has no messages to record")
        state = await self.ensure_session(session_id, user_id=user_id, now=at)
        known = state.run(run_id)
        created = False
        if known is not None:
            start, size = known
        else:
            start, size, created = await self._claim(
                session_id, run_id, user_id, agent_id, messages, state.next_seq, at, max_steps
            )
        docs = [
            _message_doc(session_id, run_id, user_id, agent_id, i, start, size, m, at)
            for i, m in enumerate(messages[:size])
        ]
        await self._fill(docs[1:], run_id)
        new = [StoredMessage(d["seq"], run_id, d["idx"], _chat(session_id, d["seq"], d))
               for d in docs]
        state = await self._cache(session_id, new, (run_id, start, size), at, known=state)
        learned = False
        if not created:
            head = await self._messages.find_one({"_id": _mid(session_id, start)}, {"learned": 1})
            learned = bool(head and head.get("learned"))
        return Turn(run_id, start, size, created, learned, state)

    async def _claim(
        self, session_id: str, run_id: str, user_id: str, agent_id: str,
        messages: Sequence[Mapping[str, Any]], hint: int, at: datetime, max_steps: int,
    ) -> tuple[int, int, bool]:
        candidate = hint
        size = len(messages)
        for _ in range(max_steps):
            head = _message_doc(
                session_id, run_id, user_id, agent_id, 0, candidate, size, messages[0], at
            )
            try:
                await self._messages.insert_one(head)
                return candidate, size, True
            except DuplicateKeyError:
                pass
            there = await self._messages.find_one({"_id": _mid(session_id, candidate)})
            if there is not None and there["run_id"] != run_id:
                candidate = int(there["turn_start"]) + int(there["turn_size"])
                continue
            if there is None:  # the clash was on (run_id, idx): claimed before, elsewhere
                there = await self._messages.find_one({"run_id": run_id, "idx": 0})
                if there is None:
                    raise ConflictError(f"run {run_id}: a concurrent claim is in flight")
            if there["session_id"] != session_id:
                raise InvalidInputError(
                    f"run {run_id} is already recorded in session {there['session_id']}"
                )
            return int(there["turn_start"]), int(there["turn_size"]), False
        raise ConflictError(f"session {session_id}: no free seq for run {run_id} yet")

    async def _fill(self, docs: list[Doc], run_id: str) -> None:
        """Write the rest of a claimed turn; a message already there must be this run's."""
        if not docs:
            return
        try:
            await self._messages.insert_many(docs, ordered=False)
            return
        except BulkWriteError as exc:
            if not _only_duplicates(exc):
                raise
        # Some servers (FerretDB) stop an unordered batch at the first duplicate.
        for doc in docs:
            try:
                await self._messages.insert_one(doc)
            except DuplicateKeyError:
                there = await self._messages.find_one({"_id": doc["_id"]}, {"run_id": 1})
                if there is None or there["run_id"] != run_id:
                    raise ConflictError(
                        f"{doc['_id']} belongs to run {there and there['run_id']}, not {run_id}"
                    ) from None

    async def _cache(
        self, session_id: str, new: list[StoredMessage], run: tuple[str, int, int],
        at: datetime, attempts: int = 8, *, known: SessionState | None = None,
    ) -> SessionState:
        """Merge a recorded turn into the session's cached tail and ``next_seq`` hint.

        ``known``: the state the caller read moments ago; the first attempt writes
        against its version (a stale one is a conflict, and the next attempt reads).
        """
        run_id, start, size = run
        for _ in range(attempts):
            state, known = known or await self.get_session(session_id), None
            if state is None:  # pragma: no cover - sessions are never deleted
                raise ConflictError(f"session {session_id} vanished")
            have = {m.seq for m in state.tail}
            fresh = [m for m in new if m.seq >= state.summarized_through and m.seq not in have]
            if state.run(run_id) is not None and not fresh:
                return state
            tail = sorted([*state.tail, *fresh], key=lambda m: m.seq)
            recent = [{"run_id": r, "start": s0, "size": n} for r, s0, n in state.recent_runs
                      if r != run_id]
            recent = [*recent, {"run_id": run_id, "start": start, "size": size}][-RECENT_RUNS:]
            try:
                doc = await update_versioned(
                    self.db, SESSIONS, session_id, state.version,
                    {"$set": {
                        "next_seq": max(state.next_seq, start + size),
                        "recent_runs": recent,
                        "tail": [_tail_entry(m) for m in _bounded(tail)],
                        "updated_at": at,
                    }},
                )
            except ConflictError:
                continue
            return _session(doc)
        raise ConflictError(f"session {session_id}: cache update kept conflicting")

    async def unsummarized(self, state: SessionState, *, limit: int) -> list[StoredMessage]:
        """The newest ``limit`` messages not covered by the summary, oldest first.

        Normally the cached tail; messages the cache lacks (a write lost to a
        concurrent one, on servers without atomic conditional updates) are read
        by ``_id``, and turns recorded past the ``next_seq`` hint are found by
        probing the next ``seq``. In the common case that is one extra read.
        """
        by_seq = {m.seq: m for m in state.tail if m.seq >= state.summarized_through}
        low = max(state.summarized_through, state.next_seq - limit)
        for seq in range(low, state.next_seq):
            if seq not in by_seq:
                doc = await self._messages.find_one({"_id": _mid(state.session_id, seq)})
                if doc is not None:
                    by_seq[seq] = _stored_doc(doc)
        seq = max(state.next_seq, max(by_seq, default=-1) + 1)
        while True:
            doc = await self._messages.find_one({"_id": _mid(state.session_id, seq)})
            if doc is None:
                break
            by_seq[seq] = _stored_doc(doc)
            seq += 1
        return [by_seq[k] for k in sorted(by_seq)][-limit:]

    async def mark_learned(self, session_id: str, start: int) -> None:
        await self._messages.update_one(
            {"_id": _mid(session_id, start)}, {"$set": {"learned": True}}
        )

    async def history(self, session_id: str) -> list[StoredMessage]:
        """Every recorded message of a session, in order (operators and tests; a scan)."""
        cursor = self._messages.find({"session_id": session_id}).sort("seq", 1)
        return [
            _stored_doc(d) async for d in cursor
        ]

    # -- memories -------------------------------------------------------------

    async def memories_of(self, user_id: str, *, limit: int = 1000) -> list[Memory]:
        cursor = self._memories.find({"user_id": user_id}).sort("updated_at", -1).limit(limit)
        return [_memory(doc) async for doc in cursor]

    async def add_memory(self, memory: Memory) -> None:
        """Insert a new memory; a concurrent insert of the same id is a conflict (re-merge)."""
        try:
            await self._memories.insert_one(_memory_doc(memory))
        except DuplicateKeyError as exc:
            raise ConflictError(f"memory {memory.id} was added concurrently") from exc

    async def update_memory(self, update: MemoryUpdate) -> None:
        doc = _memory_doc(update.current)
        doc.pop("_id")
        if not await update_if_version(self.db, MEMORIES, update.previous.id,
                                       update.previous.version, {"$set": doc}):
            raise ConflictError(f"memory {update.previous.id} changed concurrently")

    async def delete_memories(self, user_id: str, ids: Iterable[str] | None = None) -> list[Memory]:
        """Delete the user's memories (all, or those of ``ids``); returns what was deleted."""
        query: Doc = {"user_id": user_id}
        if ids is not None:
            query["_id"] = {"$in": list(ids)}
        found = [_memory(doc) async for doc in self._memories.find(query)]
        deleted: list[Memory] = []
        for memory in found:
            result = await self._memories.delete_one({"_id": memory.id, "user_id": user_id})
            if result.deleted_count:
                deleted.append(memory)
        return deleted

    # -- knowledge ------------------------------------------------------------

    async def document(self, document_id: str) -> DocumentInfo | None:
        doc = await self._documents.find_one({"_id": document_id}, {"text": 0})
        return _document_info(doc) if doc is not None else None

    async def documents(self) -> list[DocumentInfo]:
        cursor = self._documents.find({"deleted": {"$ne": True}}, {"text": 0})
        return [_document_info(doc) async for doc in cursor]

    async def put_chunks(
        self,
        info: DocumentInfo,
        chunks: Sequence[Chunk],
        embeddings: Sequence[Sequence[float]] | None,
    ) -> None:
        """Upsert chunks by id (idempotent: chunk ids derive from document, hash and index)."""
        for i, chunk in enumerate(chunks):
            doc: Doc = {
                "document_id": info.document_id,
                "doc_hash": chunk.doc_hash,
                "index": chunk.index,
                "text": chunk.text,
                "char_start": chunk.char_start,
                "char_end": chunk.char_end,
                "heading_path": list(chunk.heading_path),
                "token_estimate": chunk.token_estimate,
                "embedding": list(embeddings[i]) if embeddings is not None else None,
            }
            await self._chunks.replace_one({"_id": chunk.id}, doc, upsert=True)

    async def delete_chunks(self, document_id: str, *, keep_hash: str | None = None) -> int:
        query: Doc = {"document_id": document_id}
        if keep_hash is not None:
            query["doc_hash"] = {"$ne": keep_hash}
        result = await self._chunks.delete_many(query)
        return int(result.deleted_count)

    async def put_document(self, info: DocumentInfo, *, text: str | None, now: datetime) -> None:
        await self._documents.replace_one(
            {"_id": info.document_id},
            {
                "source": info.source,
                "title": info.title,
                "metadata": dict(info.metadata),
                "doc_hash": info.doc_hash,
                "deleted": info.deleted,
                "published_at": info.published_at,
                "text": text,
                "updated_at": now,
            },
            upsert=True,
        )

    async def chunks_of(self, document_ids: Sequence[str]) -> list[Doc]:
        cursor = self._chunks.find({"document_id": {"$in": list(document_ids)}})
        return [doc async for doc in cursor]

    async def corpus_version(self) -> int:
        doc = await self._meta.find_one({"_id": _CORPUS})
        return int(doc["version"]) if doc is not None else 0

    async def bump_corpus(self) -> int:
        doc = await self._meta.find_one_and_update(
            {"_id": _CORPUS},
            {"$inc": {"version": 1}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        return int(doc["version"]) if doc is not None else 0


def _document_info(doc: Mapping[str, Any]) -> DocumentInfo:
    return DocumentInfo(
        document_id=doc["_id"],
        source=doc.get("source") or doc["_id"],
        title=doc.get("title"),
        metadata=dict(doc.get("metadata") or {}),
        doc_hash=doc.get("doc_hash"),
        deleted=bool(doc.get("deleted", False)),
        published_at=doc.get("published_at"),
    )
