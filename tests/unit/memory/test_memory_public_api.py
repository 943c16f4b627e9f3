"""The memory core's public surface, pinned: a change here is a deliberate API change."""

from __future__ import annotations

import importlib

import pytest

pytestmark = pytest.mark.unit

PUBLIC = {
    "tokens": [
        "MESSAGE_OVERHEAD",
        "estimate_message_tokens",
        "estimate_tokens",
        "truncate_to_tokens",
    ],
    "window": [
        "SummaryPlan",
        "Window",
        "WindowPolicy",
        "group_units",
        "plan_summary",
        "select_window",
    ],
    "summarizer": ["ExtractiveSummarizer", "ModelSummarizer", "Summarizer"],
    "learning": [
        "ALWAYS_RELEVANT",
        "MULTI_VALUED",
        "Extractor",
        "Fact",
        "Memory",
        "MemoryRevision",
        "MemoryUpdate",
        "MergePlan",
        "ModelExtractor",
        "RuleExtractor",
        "equivalent",
        "memory_id",
        "merge",
        "normalize_topic",
        "parse_facts",
        "rank_memories",
    ],
    "chunking": ["Chunk", "IngestPlan", "chunk_document", "content_hash", "plan_ingest"],
    "retrieval": [
        "BM25Index",
        "Embedder",
        "Hit",
        "HybridRetriever",
        "IndexFullError",
        "OpenAIEmbedder",
        "RetrievalResult",
        "VectorIndex",
        "reciprocal_rank_fusion",
    ],
    "context": [
        "ContextBudget",
        "ContextBundle",
        "Included",
        "KnowledgeItem",
        "KnowledgeLike",
        "MemoryItem",
        "assemble_context",
        "render_knowledge",
        "render_memory",
    ],
    "model_client": ["ChatModel", "make_openai_client"],
    "text": ["STOPWORDS", "stem", "tokenize"],
    "errors": [
        "InvalidDocumentError",
        "InvalidHistoryError",
        "InvalidInputError",
        "MemoryServiceError",
        "ModelUnavailableError",
        "TransientError",
    ],
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_public_surface_is_pinned(module: str) -> None:
    mod = importlib.import_module(f"services.memory.{module}")
    assert sorted(mod.__all__) == sorted(PUBLIC[module])
    for name in mod.__all__:
        assert hasattr(mod, name), name


def test_error_tree_says_what_is_retried() -> None:
    from services.memory import errors

    assert not errors.InvalidHistoryError.retryable
    assert issubclass(errors.InvalidHistoryError, ValueError)
    assert errors.ModelUnavailableError.retryable
