"""A run's context from the store: the session's tail, the user's memories, knowledge.

The pure assembler (:mod:`services.memory.context`) decides what fits the
agent's token budget; this module only loads its inputs and turns its bundle
into the contract's :class:`~schemas.runs.RunContext`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from schemas.agents import MemorySettings
from schemas.common import ChatMessage
from schemas.knowledge import KnowledgeHit
from schemas.runs import MemoryItem, RunContext, RunRequested
from services.memory.context import ContextBudget, ContextBundle, assemble_context
from services.memory.knowledge import KnowledgeBase
from services.memory.learning import rank_memories
from services.memory.settings import MemoryServiceSettings
from services.memory.store import MemoryStore
from services.memory.window import WindowPolicy

__all__ = ["Assembled", "ContextAssembler", "chat_message", "memory_label"]

_LABEL_BAD = re.compile(r"[^a-z0-9_-]+")


def memory_label(topic: str) -> str | None:
    """The contract label of a memory topic: its base (``preference:tea`` → ``preference``)."""
    base = _LABEL_BAD.sub("_", topic.partition(":")[0].lower()).strip("_-")[:64]
    return base if base and base[0].isalpha() else None


def chat_message(chat: Mapping[str, Any]) -> ChatMessage:
    """A stored chat dict back into the contract (the ``id`` is ours, not the model's)."""
    return ChatMessage.model_validate(
        {k: v for k, v in chat.items() if k != "id" and (v is not None or k == "content")}
    )


@dataclass(frozen=True)
class _KnowledgeView:
    """A contract hit seen through the assembler's ``KnowledgeLike`` protocol."""

    hit: KnowledgeHit

    @property
    def id(self) -> str:
        return self.hit.chunk_id

    @property
    def text(self) -> str:
        return self.hit.text

    @property
    def source(self) -> str:
        return self.hit.title or self.hit.source or self.hit.document_id

    @property
    def score(self) -> float:
        return self.hit.score


@dataclass(frozen=True)
class Assembled:
    context: RunContext
    bundle: ContextBundle


@dataclass
class ContextAssembler:
    store: MemoryStore
    knowledge: KnowledgeBase
    settings: MemoryServiceSettings

    def budget(self, memory: MemorySettings) -> ContextBudget:
        total = memory.token_budget
        return ContextBudget(
            total_tokens=total,
            memory_max_tokens=min(self.settings.context_memory_max_tokens, total),
            knowledge_max_tokens=min(self.settings.context_knowledge_max_tokens, total),
        )

    def policy(self, memory: MemorySettings, *, max_tokens: int | None = None) -> WindowPolicy:
        s = self.settings
        return WindowPolicy(
            max_messages=max(1, min(memory.history_messages, 500)),
            max_tokens=max(1, memory.token_budget if max_tokens is None else max_tokens),
            summary_trigger=s.summary_trigger,
            max_summary_share=s.summary_max_share,
        )

    async def assemble(
        self, request: RunRequested, memory: MemorySettings, *, knowledge_on: bool, now: datetime
    ) -> Assembled:
        session = await self.store.get_session(request.session_id)
        summary = session.summary if session else None
        through = session.summarized_through if session else 0
        history: list[dict[str, Any]] = []
        older_omitted = through > 0
        if memory.history_messages > 0 and session is not None:
            limit = min(self.settings.history_load_limit, memory.history_messages + 16)
            tail = await self.store.unsummarized(session, limit=limit)
            if tail and tail[0].seq > through:
                older_omitted = True
            history = [m.chat for m in tail]
            while history and history[0]["role"] == "tool":  # its call was not loaded
                history.pop(0)
        memories = []
        if self.settings.context_memories:
            known = await self.store.memories_of(
                request.user_id, limit=self.settings.memories_per_user_limit
            )
            memories = rank_memories(known, request.input, now, self.settings.context_memories)
        hits: list[KnowledgeHit] = []
        if knowledge_on and self.settings.context_knowledge_hits:
            hits = await self.knowledge.search(
                request.input, top_k=self.settings.context_knowledge_hits
            )
        bundle = assemble_context(
            history=history,
            summary=summary,
            memories=memories,
            knowledge=[_KnowledgeView(h) for h in hits],
            budget=self.budget(memory),
            window_policy=self.policy(memory),
            history_is_suffix=older_omitted,
        )
        by_id = {h.chunk_id: h for h in hits}
        context = RunContext(
            history=[chat_message(m) for m in bundle.history],
            summary=bundle.summary,
            memories=[
                MemoryItem(id=m.id, text=m.text, topic=memory_label(m.topic))
                for m in bundle.memories
            ],
            knowledge=[by_id[k.id] for k in bundle.knowledge],
            token_estimate=bundle.included.total_tokens,
        )
        return Assembled(context=context, bundle=bundle)
