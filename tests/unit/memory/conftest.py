"""Fakes for the memory service's unit tests: an ``AsyncOpenAI`` look-alike."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest


class FakeOpenAI:
    """Answers ``chat.completions.create`` from a script and ``embeddings.create``
    from a function; records every call's keyword arguments."""

    def __init__(
        self,
        replies: list[str | BaseException] | None = None,
        embed: Callable[[str], list[float]] | None = None,
    ) -> None:
        self.replies = list(replies or [])
        self.embed_fn = embed
        self.chat_calls: list[dict[str, Any]] = []
        self.embed_calls: list[dict[str, Any]] = []
        self.chat = SimpleNamespace(completions=SimpleNamespace(create=self._chat))
        self.embeddings = SimpleNamespace(create=self._embed)

    async def _chat(self, **kwargs: Any) -> Any:
        self.chat_calls.append(kwargs)
        if not self.replies:
            raise AssertionError("unexpected chat call")
        reply = self.replies.pop(0)
        if isinstance(reply, BaseException):
            raise reply
        message = SimpleNamespace(content=reply, role="assistant")
        return SimpleNamespace(choices=[SimpleNamespace(message=message, index=0)])

    async def _embed(self, **kwargs: Any) -> Any:
        self.embed_calls.append(kwargs)
        if self.embed_fn is None:
            raise RuntimeError("embeddings unavailable")
        texts = kwargs["input"]
        data = [SimpleNamespace(index=i, embedding=self.embed_fn(t)) for i, t in enumerate(texts)]
        return SimpleNamespace(data=list(reversed(data)))  # servers may reorder; index decides


@pytest.fixture
def fake_openai() -> type[FakeOpenAI]:
    return FakeOpenAI
