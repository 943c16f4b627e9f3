"""Knowledge search: BM25 always, vector similarity when an embedder is configured.

* :class:`BM25Index` — Okapi BM25 (k1=1.2, b=0.75) with the non-negative
  Lucene IDF, over an inverted index so a query touches only the postings of
  its own terms.
* :class:`VectorIndex` — brute-force cosine top-k in pure Python (numpy is not
  a dependency of this project). Vectors are unit-normalised once on insert,
  so a query costs one dot product per item. See the class for measured sizes.
* :func:`reciprocal_rank_fusion` — merges rankings without calibrating their
  scores against each other (Cormack et al., 2009).
* :class:`HybridRetriever` — BM25 plus vectors fused by RRF; if the embedder
  fails at query time the search degrades to BM25 and says so in the result.
"""

from __future__ import annotations

import heapq
import logging
import math
import operator
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from services.memory.chunking import Chunk
from services.memory.errors import ModelUnavailableError
from services.memory.text import tokenize
from shared.resilience import CircuitBreaker

__all__ = [
    "BM25Index",
    "Embedder",
    "Hit",
    "HybridRetriever",
    "IndexFullError",
    "OpenAIEmbedder",
    "RetrievalResult",
    "VectorIndex",
    "reciprocal_rank_fusion",
]

log = logging.getLogger(__name__)


class BM25Index:
    """Okapi BM25 over documents added by id; re-adding an id replaces it."""

    def __init__(self, *, k1: float = 1.2, b: float = 0.75, stemming: bool = True) -> None:
        if k1 < 0 or not 0.0 <= b <= 1.0:
            raise ValueError("need k1 >= 0 and 0 <= b <= 1")
        self.k1 = k1
        self.b = b
        self.stemming = stemming
        self._postings: dict[str, dict[str, int]] = {}
        self._lengths: dict[str, int] = {}
        self._total_length = 0

    def __len__(self) -> int:
        return len(self._lengths)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._lengths

    def add(self, doc_id: str, text: str) -> None:
        if doc_id in self._lengths:
            self.remove(doc_id)
        terms = tokenize(text, stemming=self.stemming)
        for term, tf in Counter(terms).items():
            self._postings.setdefault(term, {})[doc_id] = tf
        self._lengths[doc_id] = len(terms)
        self._total_length += len(terms)

    def remove(self, doc_id: str) -> bool:
        length = self._lengths.pop(doc_id, None)
        if length is None:
            return False
        self._total_length -= length
        for term in [t for t, docs in self._postings.items() if doc_id in docs]:
            del self._postings[term][doc_id]
            if not self._postings[term]:
                del self._postings[term]
        return True

    def idf(self, term: str) -> float:
        n = len(self._lengths)
        df = len(self._postings.get(term, ()))
        return math.log(1.0 + (n - df + 0.5) / (df + 0.5))

    def search(
        self, query: str, k: int = 10, *, allow: Callable[[str], bool] | None = None
    ) -> list[tuple[str, float]]:
        """Top ``k`` ``(doc_id, score)`` with a positive score, best first.

        Ties are broken by id so results are deterministic.
        """
        if k <= 0 or not self._lengths:
            return []
        avgdl = self._total_length / len(self._lengths) or 1.0
        scores: dict[str, float] = {}
        for term in set(tokenize(query, stemming=self.stemming)):
            postings = self._postings.get(term)
            if not postings:
                continue
            idf = self.idf(term)
            for doc_id, tf in postings.items():
                if allow is not None and not allow(doc_id):
                    continue
                norm = self.k1 * (1.0 - self.b + self.b * self._lengths[doc_id] / avgdl)
                scores[doc_id] = scores.get(doc_id, 0.0) + idf * tf * (self.k1 + 1) / (tf + norm)
        return heapq.nsmallest(k, scores.items(), key=lambda item: (-item[1], item[0]))


class IndexFullError(Exception):
    """The vector index is at capacity: raise the bound or shard, don't drop silently."""


class VectorIndex:
    """Brute-force cosine top-k over unit vectors in ``array('d')`` rows.

    Pure Python, so the cost is one ``sum(map(mul, q, v))`` per item. Measured
    on one core of the development machine (CPython 3.11.7): 1,000 vectors of
    384 dimensions take ~14 ms per query, 10,000 take ~0.13 s, and 5,000 of
    1,536 dimensions ~0.26 s. It serves comfortably up to ~10,000 vectors of
    384 dimensions (~2,500 of 1,536) per replica. ``max_items`` bounds memory
    (8 bytes a float: 20,000 x 384 is about 61 MB) and adding beyond it raises
    :class:`IndexFullError` rather than evicting, so a search is never silently
    partial. Past that size, use numpy or a vector database.
    """

    def __init__(self, *, dim: int | None = None, max_items: int = 20_000) -> None:
        if max_items < 1:
            raise ValueError("max_items must be at least 1")
        self.dim = dim
        self.max_items = max_items
        self._rows: dict[str, array[float]] = {}

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._rows

    def _unit(self, vector: Sequence[float]) -> array[float]:
        if self.dim is None:
            if not vector:
                raise ValueError("empty vector")
            self.dim = len(vector)
        if len(vector) != self.dim:
            raise ValueError(f"vector has dimension {len(vector)}, index has {self.dim}")
        norm = math.sqrt(sum(x * x for x in vector))
        if norm == 0.0 or not math.isfinite(norm):
            raise ValueError("vector has zero or non-finite norm")
        return array("d", (x / norm for x in vector))

    def add(self, item_id: str, vector: Sequence[float]) -> None:
        row = self._unit(vector)
        if item_id not in self._rows and len(self._rows) >= self.max_items:
            raise IndexFullError(f"vector index holds its maximum of {self.max_items} items")
        self._rows[item_id] = row

    def remove(self, item_id: str) -> bool:
        return self._rows.pop(item_id, None) is not None

    def search(
        self,
        vector: Sequence[float],
        k: int = 10,
        *,
        allow: Callable[[str], bool] | None = None,
    ) -> list[tuple[str, float]]:
        """Top ``k`` ``(item_id, cosine)`` best first, ties broken by id."""
        if k <= 0 or not self._rows:
            return []
        query = self._unit(vector)
        mul = operator.mul
        scored = (
            (item_id, sum(map(mul, query, row)))
            for item_id, row in self._rows.items()
            if allow is None or allow(item_id)
        )
        return heapq.nsmallest(k, scored, key=lambda item: (-item[1], item[0]))


def reciprocal_rank_fusion(
    rankings: Iterable[Sequence[str]], k: int = 60
) -> list[tuple[str, float]]:
    """Fused ``(id, score)`` best first; score = Σ 1 / (k + rank), rank from 1.

    An id missing from a ranking simply gets nothing from it. Ties keep the
    order in which ids were first seen, so the result is deterministic.
    """
    if k < 0:
        raise ValueError("k must not be negative")
    scores: dict[str, float] = {}
    for ranking in rankings:
        seen: set[str] = set()
        for rank, item_id in enumerate(ranking, start=1):
            if item_id in seen:
                continue
            seen.add(item_id)
            scores[item_id] = scores.get(item_id, 0.0) + 1.0 / (k + rank)
    order = {item_id: i for i, item_id in enumerate(scores)}
    return sorted(scores.items(), key=lambda item: (-item[1], order[item[0]]))


class Embedder(Protocol):
    async def embed(self, texts: list[str]) -> list[list[float]]: ...


@dataclass
class OpenAIEmbedder:
    """Embeddings from any OpenAI-compatible ``/v1/embeddings`` endpoint.

    ``client`` is an ``AsyncOpenAI`` (or a fake with ``embeddings.create``).
    Failures surface as :class:`ModelUnavailableError` (retryable).
    """

    client: Any
    model: str
    timeout: float = 30.0
    batch_size: int = 64
    breaker: CircuitBreaker | None = None

    async def embed(self, texts: list[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for i in range(0, len(texts), self.batch_size):
            vectors += await self._batch(texts[i : i + self.batch_size])
        return vectors

    async def _batch(self, batch: list[str]) -> list[list[float]]:
        async def call() -> Any:
            return await self.client.embeddings.create(
                model=self.model, input=batch, timeout=self.timeout
            )

        try:
            response = await (self.breaker.call(call) if self.breaker else call())
            data = sorted(response.data, key=lambda d: d.index)
            vectors = [list(map(float, d.embedding)) for d in data]
        except Exception as exc:
            raise ModelUnavailableError(f"embeddings {self.model!r} failed: {exc}") from exc
        if len(vectors) != len(batch):
            raise ModelUnavailableError(
                f"embeddings {self.model!r} returned {len(vectors)} vectors for {len(batch)} texts"
            )
        return vectors


@dataclass(frozen=True)
class Hit:
    """One search result; ranks are 1-based, ``None`` where a retriever missed it.

    ``score`` is the fused RRF score (for ordering only); ``bm25_score`` and
    ``cosine`` are the raw scores of each retriever, for callers that must
    report a calibrated similarity.
    """

    chunk: Chunk
    score: float
    bm25_rank: int | None
    vector_rank: int | None
    bm25_score: float | None = None
    cosine: float | None = None

    @property
    def id(self) -> str:
        return self.chunk.id

    @property
    def text(self) -> str:
        return self.chunk.text

    @property
    def source(self) -> str:
        return self.chunk.source


@dataclass(frozen=True)
class RetrievalResult:
    hits: list[Hit]
    mode: Literal["hybrid", "bm25"]
    vector_error: str | None = None


_FILTERS = frozenset({"source", "source_prefix"})


def _filter(filters: Mapping[str, str]) -> Callable[[Chunk], bool]:
    """A chunk predicate; unknown filter keys are an error, not ignored."""
    unknown = set(filters) - _FILTERS
    if unknown:
        raise ValueError(f"unknown knowledge filter(s) {sorted(unknown)}; use {sorted(_FILTERS)}")
    source = filters.get("source")
    prefix = filters.get("source_prefix")
    return lambda c: (
        (source is None or c.source == source) and (prefix is None or c.source.startswith(prefix))
    )


@dataclass
class HybridRetriever:
    """Chunks searchable by BM25 and, with an embedder, by vectors fused with RRF.

    ``depth`` is how many candidates each retriever contributes before fusion,
    as a multiple of ``k``: RRF needs more than the final k to reorder well.
    """

    embedder: Embedder | None = None
    bm25: BM25Index = field(default_factory=BM25Index)
    vectors: VectorIndex = field(default_factory=VectorIndex)
    rrf_k: int = 60
    depth: int = 4
    _chunks: dict[str, Chunk] = field(default_factory=dict, init=False)

    def __len__(self) -> int:
        return len(self._chunks)

    async def add(
        self,
        chunks: Sequence[Chunk],
        embeddings: Sequence[Sequence[float]] | None = None,
        *,
        embed: bool = True,
    ) -> None:
        """Index ``chunks``; embeds them unless ``embeddings`` are given (from the store).

        Embedding happens before anything is indexed, so a failed embedding
        call leaves the index as it was. ``embed=False`` indexes chunks that
        have no stored vector lexically only (BM25), without calling the embedder.
        """
        if embeddings is None and embed and self.embedder is not None and chunks:
            embeddings = await self.embedder.embed([c.index_text for c in chunks])
        if embeddings is not None and len(embeddings) != len(chunks):
            raise ValueError("one embedding per chunk is needed")
        for i, chunk in enumerate(chunks):
            if embeddings is not None:
                self.vectors.add(chunk.id, embeddings[i])
            self.bm25.add(chunk.id, chunk.index_text)
            self._chunks[chunk.id] = chunk

    def remove_source(self, source: str) -> int:
        """Forget every chunk of ``source`` (before re-ingesting a changed document)."""
        ids = [cid for cid, c in self._chunks.items() if c.source == source]
        for cid in ids:
            self.bm25.remove(cid)
            self.vectors.remove(cid)
            del self._chunks[cid]
        return len(ids)

    async def search(
        self,
        query: str,
        k: int = 5,
        *,
        filters: Mapping[str, str] | None = None,
        where: Callable[[Chunk], bool] | None = None,
    ) -> RetrievalResult:
        """Top ``k`` chunks; ``filters`` are source filters, ``where`` any chunk predicate."""
        if k <= 0 or not query.strip():
            return RetrievalResult(hits=[], mode="bm25")
        allow: Callable[[str], bool] | None = None
        if filters or where is not None:
            keep = _filter(filters) if filters else None
            chunks = self._chunks
            allow = lambda cid: (keep is None or keep(chunks[cid])) and (  # noqa: E731
                where is None or where(chunks[cid])
            )
        depth = k * self.depth
        bm25_scored = self.bm25.search(query, depth, allow=allow)
        bm25 = [cid for cid, _ in bm25_scored]
        vector: list[str] = []
        cosines: dict[str, float] = {}
        error: str | None = None
        if self.embedder is not None and len(self.vectors):
            try:
                [qvec] = await self.embedder.embed([query])
                vector_scored = self.vectors.search(qvec, depth, allow=allow)
                vector = [cid for cid, _ in vector_scored]
                cosines = dict(vector_scored)
            except Exception as exc:
                log.warning("vector search failed, using BM25 only: %s", exc)
                error = str(exc) or type(exc).__name__
        used_vectors = self.embedder is not None and error is None and len(self.vectors) > 0
        mode: Literal["hybrid", "bm25"] = "hybrid" if used_vectors else "bm25"
        bm25_rank = {cid: i for i, cid in enumerate(bm25, start=1)}
        vector_rank = {cid: i for i, cid in enumerate(vector, start=1)}
        fused = reciprocal_rank_fusion([bm25, vector], k=self.rrf_k)[:k]
        bm25_scores = dict(bm25_scored)
        hits = [
            Hit(
                self._chunks[cid],
                score,
                bm25_rank.get(cid),
                vector_rank.get(cid),
                bm25_score=bm25_scores.get(cid),
                cosine=cosines.get(cid),
            )
            for cid, score in fused
        ]
        return RetrievalResult(hits=hits, mode=mode, vector_error=error)
