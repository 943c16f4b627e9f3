"""The one way the memory service talks to a chat model.

Summaries and fact extraction both send a short prompt and want text back.
Keeping the call here gives them one timeout, one optional circuit breaker
(architecture rule 6) and one place that turns "the model answered nothing"
into an error, so the callers only decide what their fallback is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from services.memory.errors import ModelUnavailableError
from shared.resilience import CircuitBreaker

if TYPE_CHECKING:
    from openai import AsyncOpenAI

__all__ = ["ChatModel", "make_openai_client"]


def make_openai_client(base_url: str, api_key: str | None, *, timeout: float) -> AsyncOpenAI:
    """An ``AsyncOpenAI`` client for any OpenAI-compatible server.

    Retries are left to the caller's policy (``max_retries=0``) so one slow
    server cannot multiply a run's latency behind our backs.
    """
    from openai import AsyncOpenAI

    return AsyncOpenAI(
        base_url=base_url, api_key=api_key or "not-needed", timeout=timeout, max_retries=0
    )


@dataclass
class ChatModel:
    """A chat model endpoint: client, model name, timeout and breaker.

    ``client`` is an ``AsyncOpenAI`` or anything with the same
    ``chat.completions.create`` coroutine (tests pass a fake).
    """

    client: Any
    model: str
    timeout: float = 30.0
    breaker: CircuitBreaker | None = None
    temperature: float = 0.0

    async def complete(
        self, messages: list[dict[str, str]], *, json_mode: bool = False, max_tokens: int = 800
    ) -> str:
        """The model's reply text; :class:`ModelUnavailableError` on any failure."""
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": max_tokens,
            "timeout": self.timeout,
        }
        if json_mode:
            kwargs["response_format"] = {"type": "json_object"}

        async def call() -> Any:
            return await self.client.chat.completions.create(**kwargs)

        try:
            response = await (self.breaker.call(call) if self.breaker else call())
        except Exception as exc:
            raise ModelUnavailableError(f"model {self.model!r} failed: {exc}") from exc
        try:
            content = response.choices[0].message.content
        except (AttributeError, IndexError, TypeError) as exc:
            raise ModelUnavailableError(f"model {self.model!r} sent no choices") from exc
        if not isinstance(content, str) or not content.strip():
            raise ModelUnavailableError(f"model {self.model!r} sent an empty reply")
        return content.strip()
