from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from services.memory.context import (
    ContextBudget,
    assemble_context,
    render_knowledge,
    render_memory,
)
from services.memory.learning import Memory
from services.memory.tokens import estimate_tokens
from services.memory.window import WindowPolicy

pytestmark = pytest.mark.unit

NOW = datetime(2025, 6, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Snippet:
    id: str
    text: str
    source: str
    score: float


def mem(i: int, text: str) -> Memory:
    return Memory(
        id=f"mem{i}", user_id="u", topic=f"t{i}", text=text, created_at=NOW, updated_at=NOW
    )


def history(n: int) -> list[dict[str, Any]]:
    return [
        {
            "id": f"h{i}",
            "role": "user" if i % 2 == 0 else "assistant",
            "content": f"message {i} about planning the garden and its tomatoes",
        }
        for i in range(n)
    ]


def test_bundle_fits_budget_and_records_what_was_included() -> None:
    memories = [mem(i, f"User fact number {i} about gardening") for i in range(20)]
    knowledge = [
        Snippet(f"k{i}", "Tomatoes need sun and water. " * 10, f"doc{i}.md", 1.0 / (i + 1))
        for i in range(10)
    ]
    budget = ContextBudget(total_tokens=700, memory_max_tokens=60, knowledge_max_tokens=250)
    bundle = assemble_context(
        history=history(60),
        summary="Goal: grow tomatoes",
        memories=memories,
        knowledge=knowledge,
        budget=budget,
    )
    inc = bundle.included
    assert inc.total_tokens <= 700
    assert inc.memory_tokens <= 60
    assert inc.knowledge_tokens <= 250
    assert inc.total_tokens == (
        inc.memory_tokens + inc.knowledge_tokens + inc.history_tokens + inc.summary_tokens
    )
    per_memory = estimate_tokens(render_memory("t0", memories[0].text))
    fitting = 60 // per_memory
    assert 0 < fitting < 20
    assert inc.memory_ids == [m.id for m in bundle.memories] == [f"mem{i}" for i in range(fitting)]
    assert inc.memories_skipped == 20 - fitting
    assert inc.memory_tokens == sum(
        estimate_tokens(render_memory(m.topic, m.text)) for m in bundle.memories
    )
    assert inc.knowledge_ids == [k.id for k in bundle.knowledge]
    assert inc.knowledge_tokens == sum(
        estimate_tokens(render_knowledge(k.source, k.text)) for k in bundle.knowledge
    )
    assert inc.history_message_ids == [m["id"] for m in bundle.history]
    assert inc.history_message_ids[-1] == "h59"
    assert inc.history_dropped == inc.history_first_index > 0
    assert bundle.summary == "Goal: grow tomatoes"


def test_history_gets_what_memories_and_knowledge_leave() -> None:
    policy = WindowPolicy(max_tokens=10_000, max_messages=1000)
    empty = assemble_context(
        history=history(40),
        summary=None,
        memories=[],
        knowledge=[],
        budget=ContextBudget(total_tokens=400),
        window_policy=policy,
    )
    busy = assemble_context(
        history=history(40),
        summary=None,
        memories=[mem(1, "User likes tomatoes")],
        knowledge=[Snippet("k", "Water tomatoes in the morning.", "g.md", 0.5)],
        budget=ContextBudget(total_tokens=400),
        window_policy=policy,
    )
    assert empty.included.history_messages > busy.included.history_messages
    assert busy.included.total_tokens <= 400
    assert empty.included.total_tokens <= 400


def test_oversized_item_is_skipped_not_truncated() -> None:
    knowledge = [
        Snippet("big", "word " * 500, "big.md", 0.9),
        Snippet("small", "short answer", "s.md", 0.5),
    ]
    bundle = assemble_context(
        history=[],
        summary=None,
        memories=[],
        knowledge=knowledge,
        budget=ContextBudget(total_tokens=1000, knowledge_max_tokens=100),
    )
    assert [k.id for k in bundle.knowledge] == ["small"]
    assert bundle.knowledge[0].text == "short answer"
    assert bundle.included.knowledge_skipped == 1
    assert bundle.history == []
    assert bundle.summary is None


def test_zero_budget_gives_empty_context() -> None:
    bundle = assemble_context(
        history=history(4),
        summary="s",
        memories=[mem(1, "x")],
        knowledge=[],
        budget=ContextBudget(total_tokens=0),
    )
    assert bundle.included.total_tokens == 0
    assert bundle.history == []
    assert bundle.memories == []
    with pytest.raises(ValueError, match="negative"):
        ContextBudget(total_tokens=-1)
