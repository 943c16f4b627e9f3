"""The knowledge base: documents in MongoDB, a search index in each replica's memory.

Ingestion writes chunks (and their embeddings) to MongoDB and bumps a corpus
version counter. Every replica keeps a :class:`HybridRetriever` built from
the stored chunks and, before each search, reads the counter (one primary-key
read): when it moved, only the documents whose hash changed are re-indexed.
So a document ingested by one replica is searchable on all of them at their
next query, with no broadcast and no change streams (FerretDB has none).

Hit scores are reported as cosine similarity when the vector retriever scored
the chunk; otherwise as the chunk's BM25 score relative to the best lexical
hit of the query (the best is 1.0), so ``min_score`` is meaningful in both modes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from schemas.knowledge import KnowledgeDocument, KnowledgeHit
from services.memory.chunking import Chunk, plan_ingest
from services.memory.retrieval import Embedder, Hit, HybridRetriever
from services.memory.store import DocumentInfo, MemoryStore

__all__ = ["IngestOutcome", "KnowledgeBase", "to_knowledge_hits"]

log = logging.getLogger(__name__)

_MAX_TITLE = 1024


@dataclass(frozen=True)
class IngestOutcome:
    action: str  # "inserted" | "replaced" | "unchanged" | "relabelled" | "deleted" | "stale"
    chunks: int = 0


def _chunk(doc: Mapping[str, Any]) -> Chunk:
    return Chunk(
        id=doc["_id"],
        source=doc["document_id"],
        doc_hash=doc["doc_hash"],
        index=int(doc["index"]),
        text=doc["text"],
        char_start=int(doc["char_start"]),
        char_end=int(doc["char_end"]),
        heading_path=tuple(doc.get("heading_path") or ()),
        token_estimate=int(doc.get("token_estimate", 0)),
    )


@dataclass
class KnowledgeBase:
    """Ingest and search; ``chunk_source`` of every indexed chunk is its document id."""

    store: MemoryStore
    embedder: Embedder | None = None
    chunk_max_tokens: int = 300
    chunk_overlap_tokens: int = 40
    _retriever: HybridRetriever = field(init=False)
    _version: int = field(default=-1, init=False)
    _indexed: dict[str, str | None] = field(default_factory=dict, init=False)
    _docs: dict[str, DocumentInfo] = field(default_factory=dict, init=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)

    def __post_init__(self) -> None:
        self._retriever = HybridRetriever(embedder=self.embedder)

    # -- ingestion --------------------------------------------------------------

    async def ingest(self, message: KnowledgeDocument, *, now: datetime) -> IngestOutcome:
        """Apply one document message; safe to repeat (same message, same outcome)."""
        existing = await self.store.document(message.document_id)
        if (
            existing is not None
            and existing.published_at is not None
            and existing.published_at > message.published_at
        ):
            return IngestOutcome("stale")
        info = DocumentInfo(
            document_id=message.document_id,
            source=message.source,
            title=message.title,
            metadata=dict(message.metadata),
            doc_hash=None,
            deleted=message.deleted,
            published_at=message.published_at,
        )
        if message.deleted:
            if existing is None or existing.deleted:
                return IngestOutcome("unchanged")
            await self.store.delete_chunks(message.document_id)
            await self.store.put_document(info, text=None, now=now)
            await self.store.bump_corpus()
            return IngestOutcome("deleted")
        live_hash = existing.doc_hash if existing is not None and not existing.deleted else None
        plan = plan_ingest(
            message.document_id,
            message.text,
            existing_hash=live_hash,
            max_tokens=self.chunk_max_tokens,
            overlap_tokens=self.chunk_overlap_tokens,
        )
        info = replace(info, doc_hash=plan.doc_hash)
        if plan.action == "unchanged":
            assert existing is not None
            if (existing.title, existing.metadata, existing.source) == (
                info.title,
                info.metadata,
                info.source,
            ):
                return IngestOutcome("unchanged")
            await self.store.put_document(info, text=message.text, now=now)
            await self.store.bump_corpus()
            return IngestOutcome("relabelled")
        embeddings = None
        if self.embedder is not None and plan.chunks:
            embeddings = await self.embedder.embed([c.index_text for c in plan.chunks])
        # New chunks first, then drop the old ones, then point the document at the new
        # hash: a crash at any step is repaired by the redelivery re-running the plan.
        await self.store.put_chunks(info, plan.chunks, embeddings)
        await self.store.delete_chunks(message.document_id, keep_hash=plan.doc_hash)
        await self.store.put_document(info, text=message.text, now=now)
        await self.store.bump_corpus()
        action = "inserted" if plan.action == "insert" else "replaced"
        return IngestOutcome(action, len(plan.chunks))

    # -- search -----------------------------------------------------------------

    async def refresh(self) -> None:
        """Bring the in-memory index up to the stored corpus, if the version moved."""
        version = await self.store.corpus_version()
        if version == self._version:
            return
        async with self._lock:
            if version == self._version:
                return
            docs = {d.document_id: d for d in await self.store.documents()}
            stale = [
                doc_id
                for doc_id, doc_hash in self._indexed.items()
                if doc_id not in docs or docs[doc_id].doc_hash != doc_hash
            ]
            for doc_id in stale:
                self._retriever.remove_source(doc_id)
                del self._indexed[doc_id]
            fresh = [d for d in docs if d not in self._indexed]
            if fresh:
                await self._index(fresh, docs)
            self._docs = docs
            self._version = version

    async def _index(self, doc_ids: list[str], docs: Mapping[str, DocumentInfo]) -> None:
        rows = await self.store.chunks_of(doc_ids)
        # Only chunks of the document's current hash: a replacement in flight may
        # briefly store both generations.
        rows = [r for r in rows if docs[r["document_id"]].doc_hash == r["doc_hash"]]
        with_vectors = [r for r in rows if r.get("embedding")]
        without = [r for r in rows if not r.get("embedding")]
        if with_vectors and self.embedder is not None:
            try:
                await self._retriever.add(
                    [_chunk(r) for r in with_vectors], [r["embedding"] for r in with_vectors]
                )
            except ValueError as exc:  # a vector of another dimension (model changed)
                log.warning("stored embeddings unusable, indexing lexically: %s", exc)
                without += with_vectors
        else:
            without += with_vectors
        if without:
            await self._retriever.add([_chunk(r) for r in without], embed=False)
        for doc_id in doc_ids:
            self._indexed[doc_id] = docs[doc_id].doc_hash

    async def search(
        self,
        query: str,
        *,
        top_k: int,
        min_score: float | None = None,
        filters: Mapping[str, str] | None = None,
    ) -> list[KnowledgeHit]:
        await self.refresh()
        docs = self._docs
        where = None
        if filters:
            wanted = dict(filters)

            def where(chunk: Chunk) -> bool:
                info = docs.get(chunk.source)
                return info is not None and all(
                    info.metadata.get(k) == v for k, v in wanted.items()
                )

        result = await self._retriever.search(query, top_k, where=where)
        hits = to_knowledge_hits(result.hits, docs)
        if min_score is not None:
            hits = [h for h in hits if h.score >= min_score]
        return hits

    @property
    def size(self) -> int:
        return len(self._retriever)


def to_knowledge_hits(hits: list[Hit], docs: Mapping[str, DocumentInfo]) -> list[KnowledgeHit]:
    """Contract hits, with a calibrated score (see the module docstring)."""
    best = max((h.bm25_score or 0.0 for h in hits), default=0.0)
    out: list[KnowledgeHit] = []
    for hit in hits:
        if hit.cosine is not None:
            score = max(-1.0, min(1.0, hit.cosine))
        elif hit.bm25_score is not None and best > 0:
            score = hit.bm25_score / best
        else:
            score = 0.0
        info = docs.get(hit.chunk.source)
        out.append(
            KnowledgeHit(
                chunk_id=hit.id,
                document_id=hit.chunk.source,
                text=hit.text[:32_000],
                score=round(score, 6),
                title=info.title[:_MAX_TITLE] if info and info.title else None,
                source=info.source[:_MAX_TITLE] if info else None,
                metadata=dict(info.metadata) if info else {},
            )
        )
    return out
