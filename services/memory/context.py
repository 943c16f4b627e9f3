"""Assemble the context of one run within a token budget. Pure: inputs in, bundle out.

Order of claim on the budget, and why:

1. memories — few, short, and they personalise every answer (the user's
   name, diet, allergies), so they go first, up to ``memory_max_tokens``;
2. knowledge hits — the evidence for this request, up to ``knowledge_max_tokens``;
3. history — takes what is left (never more than its window policy allows),
   newest first, with the running summary when older turns were cut.

Items are taken in the order given (callers pass ranked lists); an item too
big for what remains is skipped, not truncated, and counted as skipped. The
``included`` record says exactly what went in and what it cost, so a run's
context can be audited and replayed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from services.memory.learning import Memory
from services.memory.tokens import estimate_tokens
from services.memory.window import WindowPolicy, select_window

__all__ = [
    "ContextBudget",
    "ContextBundle",
    "Included",
    "KnowledgeItem",
    "KnowledgeLike",
    "MemoryItem",
    "assemble_context",
    "render_knowledge",
    "render_memory",
]


class KnowledgeLike(Protocol):
    """What the assembler needs of a knowledge hit (``retrieval.Hit`` fits)."""

    @property
    def id(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def score(self) -> float: ...


@dataclass(frozen=True)
class ContextBudget:
    total_tokens: int = 6000
    memory_max_tokens: int = 500
    knowledge_max_tokens: int = 2000

    def __post_init__(self) -> None:
        if min(self.total_tokens, self.memory_max_tokens, self.knowledge_max_tokens) < 0:
            raise ValueError("token budgets must not be negative")


class MemoryItem(BaseModel):
    model_config = ConfigDict(frozen=True)
    id: str
    topic: str
    text: str
    tokens: int


class KnowledgeItem(BaseModel):
    model_config = ConfigDict(frozen=True)
    id: str
    source: str
    text: str
    score: float
    tokens: int


class Included(BaseModel):
    """What went into the context and its estimated token cost, part by part."""

    model_config = ConfigDict(frozen=True)
    budget_tokens: int
    total_tokens: int
    summary_tokens: int
    history_message_ids: list[str]
    history_messages: int
    history_tokens: int
    history_first_index: int
    history_dropped: int
    memory_ids: list[str]
    memory_tokens: int
    memories_skipped: int
    knowledge_ids: list[str]
    knowledge_tokens: int
    knowledge_skipped: int


class ContextBundle(BaseModel):
    model_config = ConfigDict(frozen=True)
    summary: str | None
    history: list[dict[str, Any]] = Field(default_factory=list)
    memories: list[MemoryItem] = Field(default_factory=list)
    knowledge: list[KnowledgeItem] = Field(default_factory=list)
    included: Included


def render_memory(topic: str, text: str) -> str:
    """How a memory appears in a prompt; its token cost is measured on this."""
    return f"- ({topic}) {text}"


def render_knowledge(source: str, text: str) -> str:
    """How a knowledge hit appears in a prompt; its token cost is measured on this."""
    return f"[{source}]\n{text}"


def assemble_context(
    *,
    history: Sequence[Mapping[str, Any]],
    summary: str | None,
    memories: Sequence[Memory],
    knowledge: Sequence[KnowledgeLike],
    budget: ContextBudget | None = None,
    window_policy: WindowPolicy | None = None,
    history_is_suffix: bool = False,
) -> ContextBundle:
    """``history_is_suffix``: ``history`` is the session's newest messages only
    (older ones are in the summary or were not loaded); see ``select_window``."""
    budget = budget or ContextBudget()
    remaining = budget.total_tokens

    memory_items: list[MemoryItem] = []
    memory_room = min(budget.memory_max_tokens, remaining)
    for memory in memories:
        cost = estimate_tokens(render_memory(memory.topic, memory.text))
        if cost <= memory_room:
            memory_items.append(
                MemoryItem(id=memory.id, topic=memory.topic, text=memory.text, tokens=cost)
            )
            memory_room -= cost
    memory_tokens = sum(m.tokens for m in memory_items)
    remaining -= memory_tokens

    knowledge_items: list[KnowledgeItem] = []
    knowledge_room = min(budget.knowledge_max_tokens, remaining)
    for hit in knowledge:
        cost = estimate_tokens(render_knowledge(hit.source, hit.text))
        if cost <= knowledge_room:
            knowledge_items.append(
                KnowledgeItem(
                    id=hit.id, source=hit.source, text=hit.text, score=hit.score, tokens=cost
                )
            )
            knowledge_room -= cost
    knowledge_tokens = sum(k.tokens for k in knowledge_items)
    remaining -= knowledge_tokens

    window = select_window(
        history,
        summary=summary,
        policy=window_policy,
        max_tokens=remaining,
        older_omitted=history_is_suffix,
    )
    included = Included(
        budget_tokens=budget.total_tokens,
        total_tokens=memory_tokens + knowledge_tokens + window.token_estimate,
        summary_tokens=window.summary_tokens,
        history_message_ids=window.message_ids,
        history_messages=len(window.messages),
        history_tokens=window.message_tokens,
        history_first_index=window.first_index,
        history_dropped=window.dropped_messages,
        memory_ids=[m.id for m in memory_items],
        memory_tokens=memory_tokens,
        memories_skipped=len(memories) - len(memory_items),
        knowledge_ids=[k.id for k in knowledge_items],
        knowledge_tokens=knowledge_tokens,
        knowledge_skipped=len(knowledge) - len(knowledge_items),
    )
    return ContextBundle(
        summary=window.summary,
        history=[dict(m) for m in window.messages],
        memories=memory_items,
        knowledge=knowledge_items,
        included=included,
    )
