"""The model client: one streamed chat completion, made resilient.

Every call streams (so ``model.delta`` events reach users while the model types),
reassembles tool-call deltas by index, and returns one :class:`ModelResponse`.
Around each attempt sit, per endpoint: a concurrency limit (a semaphore, so a busy
replica queues instead of flooding the endpoint), a circuit breaker (a sick endpoint
fails runs fast instead of piling them up), a per-attempt timeout, and retries with
full jitter on 429/5xx/connection errors, all bounded by the request's deadline.

``on_delta`` receives content as it arrives. If an attempt fails mid-stream and is
retried, the deltas of the new attempt follow; the returned response is authoritative.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import openai
from openai import AsyncStream
from openai.types.chat import ChatCompletionChunk
from pydantic import BaseModel, ConfigDict, Field

from services.reasoning.errors import (
    ModelCircuitOpenError,
    ModelProtocolError,
    ModelRequestError,
    ModelUnavailableError,
    StructuredOutputError,
)
from services.reasoning.json_schema import validate
from shared.observability.tracing import start_span
from shared.resilience import CircuitBreaker, CircuitOpenError, RetryPolicy, retry_async

__all__ = [
    "DeltaCallback",
    "ModelClient",
    "ModelClientConfig",
    "ModelRequest",
    "ModelResponse",
    "ModelToolCall",
    "ModelUsage",
    "is_transient",
]

DeltaCallback = Callable[[str], Awaitable[None]]
_RETRYABLE_STATUS = frozenset({408, 409, 429})


class ModelRequest(BaseModel):
    """One chat completion to make. ``messages`` and ``tools`` use the OpenAI wire shapes."""

    model_config = ConfigDict(extra="forbid")

    model: str
    messages: list[dict[str, Any]] = Field(min_length=1)
    tools: list[dict[str, Any]] = Field(default_factory=list)
    tool_choice: str | dict[str, Any] | None = None
    temperature: float | None = None
    max_tokens: int | None = Field(default=None, gt=0)
    base_url: str | None = None  # None: the configured default endpoint
    deadline: datetime | None = None  # absolute; bounds every attempt and retry
    response_schema: dict[str, Any] | None = None  # structured output: content must match


class ModelToolCall(BaseModel):
    id: str
    name: str
    arguments: dict[str, Any]


class ModelUsage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class ModelResponse(BaseModel):
    content: str
    tool_calls: list[ModelToolCall] = Field(default_factory=list)
    usage: ModelUsage = Field(default_factory=ModelUsage)
    finish_reason: str | None = None
    latency_ms: float
    time_to_first_token_ms: float | None = None
    attempts: int = 1
    parsed: Any = None  # the decoded content when a response_schema was given


@dataclass(frozen=True)
class ModelClientConfig:
    """Endpoint and resilience settings; built from the service settings at the entrypoint."""

    base_url: str
    api_key: str = "unused"
    api_keys: dict[str, str] = field(default_factory=dict)  # per base_url overrides
    call_timeout_s: float = 60.0  # one attempt, first byte to last
    total_timeout_s: float = 180.0  # all attempts, when the request carries no deadline
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_concurrency: int = 16  # in-flight calls per endpoint, per replica
    breaker_failure_threshold: int = 5
    breaker_reset_s: float = 30.0
    send_response_format: bool = True  # ask the endpoint for JSON when a schema is given


def is_transient(exc: BaseException) -> bool:
    """Worth another attempt: rate limits, server errors, broken connections, timeouts."""
    if isinstance(exc, CircuitOpenError):
        return False
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in _RETRYABLE_STATUS or exc.status_code >= 500
    return isinstance(exc, openai.APIConnectionError | TimeoutError)


@dataclass
class _Endpoint:
    client: openai.AsyncOpenAI
    breaker: CircuitBreaker
    limit: asyncio.Semaphore


class _Assembly:
    """Accumulates one streamed answer."""

    def __init__(self) -> None:
        self.content: list[str] = []
        self.calls: dict[int, dict[str, str]] = {}
        self.usage = ModelUsage()
        self.finish_reason: str | None = None
        self.first_token_at: float | None = None

    def add_tool_delta(self, part: Any) -> None:
        """Merge one streamed tool-call fragment; fragments of one call share an index."""
        acc = self.calls.setdefault(part.index, {})
        if part.id:
            acc["id"] = part.id
        fn = part.function
        if fn is not None:
            acc["name"] = acc.get("name", "") + (fn.name or "")
            acc["arguments"] = acc.get("arguments", "") + (fn.arguments or "")

    def tool_calls(self) -> list[ModelToolCall]:
        result = []
        for index in sorted(self.calls):
            raw = self.calls[index]
            name = raw.get("name", "")
            if not name:
                raise ModelProtocolError(f"tool call #{index} has no function name")
            text = raw.get("arguments", "").strip()
            try:
                args = json.loads(text) if text else {}
            except json.JSONDecodeError as exc:
                raise ModelProtocolError(
                    f"arguments are not valid JSON ({exc.msg} at {exc.pos}): {text[:200]!r}",
                    tool=name,
                ) from exc
            if not isinstance(args, dict):
                raise ModelProtocolError(
                    f"arguments must be a JSON object, got {type(args).__name__}", tool=name
                )
            call_id = raw.get("id") or f"call_{uuid.uuid4().hex[:16]}"
            result.append(ModelToolCall(id=call_id, name=name, arguments=args))
        return result


class ModelClient:
    """Makes :class:`ModelRequest` calls against OpenAI-compatible endpoints.

    Clients, breakers and semaphores are cached per ``base_url``. ``clock`` (monotonic
    seconds), ``now`` (aware UTC) and ``sleep`` are injectable for tests.
    """

    def __init__(
        self,
        config: ModelClientConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.config = config
        self._clock, self._now, self._sleep = clock, now, sleep
        self._endpoints: dict[str, _Endpoint] = {}

    def breaker(self, base_url: str | None = None) -> CircuitBreaker:
        return self._endpoint(base_url or self.config.base_url).breaker

    def _endpoint(self, base_url: str) -> _Endpoint:
        found = self._endpoints.get(base_url)
        if found is None:
            cfg = self.config
            client = openai.AsyncOpenAI(
                base_url=base_url,
                api_key=cfg.api_keys.get(base_url, cfg.api_key),
                max_retries=0,  # retries are ours: bounded by the deadline, seen by the breaker
                timeout=cfg.call_timeout_s,
            )
            breaker = CircuitBreaker(
                name=f"model:{base_url}",
                failure_threshold=cfg.breaker_failure_threshold,
                reset_timeout=cfg.breaker_reset_s,
                clock=self._clock,
            )
            found = _Endpoint(client, breaker, asyncio.Semaphore(cfg.max_concurrency))
            self._endpoints[base_url] = found
        return found

    async def aclose(self) -> None:
        for endpoint in self._endpoints.values():
            await endpoint.client.close()
        self._endpoints.clear()

    async def complete(
        self, request: ModelRequest, on_delta: DeltaCallback | None = None
    ) -> ModelResponse:
        """Stream one completion; raise a :class:`ModelError` subclass with a clear reason."""
        with start_span("model.call", attributes={"gen_ai.request.model": request.model}):
            return await self._complete(request, on_delta)

    async def _complete(
        self, request: ModelRequest, on_delta: DeltaCallback | None = None
    ) -> ModelResponse:
        base_url = request.base_url or self.config.base_url
        endpoint = self._endpoint(base_url)
        started = self._clock()
        budget = self.config.total_timeout_s
        if request.deadline is not None:
            budget = min(budget, (request.deadline - self._now()).total_seconds())
        give_up_at = started + budget
        attempts = 0
        assembly = _Assembly()

        def remaining() -> float:
            return give_up_at - self._clock()

        async def attempt() -> _Assembly:
            nonlocal attempts, assembly
            left = remaining()
            if left <= 0:
                raise ModelUnavailableError(base_url, "deadline reached", attempts)
            attempts += 1
            assembly = _Assembly()
            async with endpoint.limit:
                return await endpoint.breaker.call(
                    lambda: self._stream(
                        endpoint, request, assembly, on_delta, min(self.config.call_timeout_s, left)
                    ),
                    counts_as_failure=is_transient,
                )

        async def bounded_sleep(seconds: float) -> None:
            await self._sleep(max(0.0, min(seconds, remaining())))

        try:
            result = await retry_async(
                attempt,
                self.config.retry,
                retry_on=lambda exc: is_transient(exc) and remaining() > 0,
                sleep=bounded_sleep,
            )
        except CircuitOpenError as exc:
            raise ModelCircuitOpenError(base_url, exc.retry_in) from exc
        except openai.APIStatusError as exc:
            if is_transient(exc):
                raise ModelUnavailableError(base_url, _describe(exc), attempts) from exc
            raise ModelRequestError(base_url, exc.status_code, _describe(exc)) from exc
        except (openai.APIConnectionError, TimeoutError) as exc:
            raise ModelUnavailableError(base_url, _describe(exc), attempts) from exc
        except openai.OpenAIError as exc:
            raise ModelProtocolError(_describe(exc)) from exc
        return self._response(request, result, started, attempts)

    async def _stream(
        self,
        endpoint: _Endpoint,
        request: ModelRequest,
        out: _Assembly,
        on_delta: DeltaCallback | None,
        limit_s: float,
    ) -> _Assembly:
        began = self._clock()
        extra: dict[str, Any] = {}
        if request.tools:
            extra["tools"] = request.tools
        if request.tool_choice is not None:
            extra["tool_choice"] = request.tool_choice
        if request.temperature is not None:
            extra["temperature"] = request.temperature
        if request.max_tokens is not None:
            extra["max_tokens"] = request.max_tokens
        if request.response_schema is not None and self.config.send_response_format:
            extra["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": request.response_schema},
            }
        async with asyncio.timeout(limit_s):
            # Messages and tools are plain wire dicts here; the SDK's TypedDict overloads
            # cannot see that, so the call is made through an untyped handle.
            completions: Any = endpoint.client.chat.completions
            stream: AsyncStream[ChatCompletionChunk] = await completions.create(
                model=request.model,
                messages=request.messages,
                stream=True,
                stream_options={"include_usage": True},
                timeout=limit_s,
                **extra,
            )
            async with stream:
                await self._consume(stream, out, on_delta, began)
        return out

    async def _consume(
        self,
        stream: AsyncStream[ChatCompletionChunk],
        out: _Assembly,
        on_delta: DeltaCallback | None,
        began: float,
    ) -> None:
        async for chunk in stream:
            if chunk.usage is not None:
                out.usage = ModelUsage(
                    prompt_tokens=chunk.usage.prompt_tokens,
                    completion_tokens=chunk.usage.completion_tokens,
                    total_tokens=chunk.usage.total_tokens,
                )
            for choice in chunk.choices:
                delta = choice.delta
                if (delta.content or delta.tool_calls) and out.first_token_at is None:
                    out.first_token_at = self._clock() - began
                if delta.content:
                    out.content.append(delta.content)
                    if on_delta is not None:
                        await on_delta(delta.content)
                for part in delta.tool_calls or []:
                    out.add_tool_delta(part)
                if choice.finish_reason:
                    out.finish_reason = choice.finish_reason

    def _response(
        self, request: ModelRequest, result: _Assembly, started: float, attempts: int
    ) -> ModelResponse:
        content = "".join(result.content)
        calls = result.tool_calls()
        parsed: Any = None
        # A reply that asks for tools is an intermediate turn: only a final answer must match.
        if request.response_schema is not None and not calls:
            parsed = _decode_structured(content)
            problems = validate(parsed, request.response_schema)
            if problems:
                raise StructuredOutputError(problems)
        ttft = result.first_token_at
        return ModelResponse(
            content=content,
            tool_calls=calls,
            usage=result.usage,
            finish_reason=result.finish_reason,
            latency_ms=round((self._clock() - started) * 1000, 3),
            time_to_first_token_ms=None if ttft is None else round(ttft * 1000, 3),
            attempts=attempts,
            parsed=parsed,
        )


def _decode_structured(content: str) -> Any:
    text = content.strip()
    if text.startswith("```"):
        # Models often fence JSON even when asked not to; the fence is not the answer.
        text = text.split("\n", 1)[1] if "\n" in text else ""
        text = text.rsplit("```", 1)[0]
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise StructuredOutputError([f"$: not JSON ({exc.msg} at {exc.pos})"]) from exc


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, openai.APIStatusError):
        body = exc.body
        if isinstance(body, dict):
            err = body.get("error", body)
            if isinstance(err, dict) and err.get("message"):
                return f"{exc.status_code} {err['message']}"
        return f"{exc.status_code} {exc.message}"
    return str(exc) or type(exc).__name__
