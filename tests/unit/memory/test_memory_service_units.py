"""Service-level pieces of memory that need no infrastructure."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from mindstream.cli.memory_cmd import document_id_for
from schemas.base import ID_PATTERN
from schemas.common import ChatMessage, ChatRole
from schemas.knowledge import KnowledgeHit
from schemas.runs import RunCompleted, RunStatus
from services.memory.assembly import chat_message, memory_label
from services.memory.chunking import chunk_document
from services.memory.errors import InvalidDocumentError, ModelUnavailableError
from services.memory.handlers import _fit_hits, turn_messages
from services.memory.knowledge import to_knowledge_hits
from services.memory.retrieval import Hit
from services.memory.settings import MemoryServiceSettings
from services.memory.store import DocumentInfo
from shared.errors import PermanentError, TransientError

pytestmark = pytest.mark.unit

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def done(messages: list[ChatMessage], output: str | None = "ok") -> RunCompleted:
    return RunCompleted(run_id="r1", session_id="s1", agent_id="a", user_id="u",
                        status=RunStatus.COMPLETED, output=output, messages=messages,
                        completed_at=T0)


def test_turn_keeps_the_conversation_without_the_system_prompt() -> None:
    turn = turn_messages(done([
        ChatMessage(role=ChatRole.SYSTEM, content="You are helpful."),
        ChatMessage(role=ChatRole.USER, content="I'm vegetarian."),
        ChatMessage(role=ChatRole.ASSISTANT, content="Noted."),
    ]))
    assert [m["role"] for m in turn] == ["user", "assistant"]
    assert turn_messages(done([], output="Just this.")) == [
        {"role": "assistant", "content": "Just this."}]
    assert turn_messages(done([], output=None)) == []


def test_stored_chat_round_trips_to_the_contract() -> None:
    stored = {"id": "s1:3", "role": "tool", "content": "42", "tool_call_id": "c1"}
    assert chat_message(stored) == ChatMessage(role=ChatRole.TOOL, content="42",
                                               tool_call_id="c1")


@pytest.mark.parametrize(("topic", "label"), [
    ("diet", "diet"), ("preference:dark chocolate", "preference"),
    ("allergy:peanuts", "allergy"), ("x" * 80, "x" * 64),
])
def test_memory_topics_become_contract_labels(topic: str, label: str) -> None:
    assert memory_label(topic) == label


def hit(text: str, *, bm25: float | None, cosine: float | None) -> Hit:
    [chunk] = chunk_document(text, source="doc-1")
    return Hit(chunk, 0.03, 1, 1, bm25_score=bm25, cosine=cosine)


def test_hit_scores_are_cosine_or_bm25_relative_to_the_best() -> None:
    info = {"doc-1": DocumentInfo("doc-1", "a.md", "A", {"k": "v"}, "h", False, None)}
    hits = to_knowledge_hits([hit("alpha", bm25=8.0, cosine=None),
                              hit("beta", bm25=2.0, cosine=None),
                              hit("gamma", bm25=None, cosine=1.5)], info)
    assert [h.score for h in hits] == [1.0, 0.25, 1.0]
    assert hits[0].title == "A" and hits[0].source == "a.md" and hits[0].metadata == {"k": "v"}


def test_knowledge_result_is_cut_to_fit_inline() -> None:
    big = KnowledgeHit(chunk_id="c", document_id="d", text="x" * 30_000, score=0.5)
    assert len(_fit_hits([big] * 20)) == 8


@pytest.mark.parametrize("path", ["docs/guide.md", "./a b/ü.txt", "x/" * 100 + "y.md"])
def test_document_ids_from_paths_are_valid_ids(path: str) -> None:
    import re

    assert re.fullmatch(ID_PATTERN, document_id_for(Path(path)))


def test_errors_map_onto_the_pipeline_tree() -> None:
    assert issubclass(InvalidDocumentError, PermanentError)
    assert issubclass(ModelUnavailableError, TransientError)


def test_settings_refuse_overlap_not_below_chunk_size() -> None:
    with pytest.raises(ValueError, match="chunk_overlap_tokens"):
        MemoryServiceSettings(chunk_max_tokens=50, chunk_overlap_tokens=50)
    policy = MemoryServiceSettings().window_policy()
    assert policy.max_messages == 40 and policy.summary_trigger == 10


def test_summary_is_kept_when_only_the_unsummarised_tail_is_passed() -> None:
    from services.memory.window import select_window

    tail = [{"role": "user", "content": "short"}]
    assert select_window(tail, summary="Goal: x").summary is None
    window = select_window(tail, summary="Goal: x", older_omitted=True)
    assert window.summary == "Goal: x" and len(window.messages) == 1


async def test_search_takes_any_chunk_predicate_and_reports_raw_scores() -> None:
    from services.memory.retrieval import HybridRetriever

    retriever = HybridRetriever()
    await retriever.add(chunk_document("red apples grow here", source="a")
                        + chunk_document("red cars drive there", source="b"))
    result = await retriever.search("red apples", 5, where=lambda c: c.source == "b")
    assert [h.chunk.source for h in result.hits] == ["b"]
    assert result.hits[0].bm25_score is not None and result.hits[0].cosine is None
