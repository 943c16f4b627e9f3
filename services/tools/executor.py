"""Run one tool call under every guard the architecture asks for, and always
answer with an :class:`ExecutionOutcome` — never an exception.

Order of checks, cheapest and most final first: the tool exists, the agent
may call it, it needs no pending approval, the arguments validate. Then the
call runs inside one deadline, ``min(tool timeout, request deadline)``,
which covers waiting for a concurrency slot, every attempt and every
backoff sleep: a retry never outlives the caller's patience.

Per attempt: a per-tool slot, then a global slot (so a saturated tool does
not hold global slots while queueing for its own), then the tool's circuit
breaker. Only :class:`TransientToolError` is retried; timeouts, sandbox
failures, transient errors and tool bugs count against the breaker, while a
tool refusing bad input (:class:`ToolFailedError`) does not — the dependency
is healthy, the request was wrong.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError, to_jsonable_python

from services.tools import sandbox
from services.tools.errors import (
    ApprovalRequiredError,
    ErrorCode,
    InvalidArgumentsError,
    InvalidResultError,
    ToolError,
    ToolNotAllowedError,
    ToolTimeoutError,
)
from services.tools.registry import ToolRegistry, ToolSpec
from shared.resilience import CircuitBreaker, CircuitOpenError

__all__ = ["ExecutionOutcome", "ExecutionRequest", "Executor", "format_validation_error"]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ExecutionRequest:
    """One call, as the tool service received it. ``deadline`` must be timezone-aware."""

    call_id: str
    tool: str
    arguments: dict[str, Any]
    agent_allowlist: Sequence[str]
    deadline: datetime
    approved: bool = False


@dataclass(frozen=True)
class ExecutionOutcome:
    """What goes back to the run. ``content`` is JSON-serialisable when ``ok``."""

    call_id: str
    ok: bool
    content: Any = None
    error_code: str | None = None
    error_message: str | None = None
    duration_ms: float = 0.0
    attempts: int = 0


@dataclass
class _Attempts:
    count: int = 0


class Executor:
    """Executes tool calls from one registry with timeouts, limits, retries and breakers."""

    def __init__(
        self,
        registry: ToolRegistry,
        *,
        global_concurrency: int = 64,
        clock: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
        breaker_failure_threshold: int = 5,
        breaker_reset_timeout: float = 30.0,
    ) -> None:
        if global_concurrency < 1:
            raise ValueError("global_concurrency must be at least 1")
        self._registry = registry
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        self._rng = rng
        self._global = asyncio.Semaphore(global_concurrency)
        self._per_tool: dict[str, asyncio.Semaphore] = {}
        self._breakers: dict[str, CircuitBreaker] = {}
        self._breaker_threshold = breaker_failure_threshold
        self._breaker_reset = breaker_reset_timeout

    def breaker(self, tool_name: str) -> CircuitBreaker:
        """The breaker of one tool (created on first use); exposed for metrics."""
        b = self._breakers.get(tool_name)
        if b is None:
            b = CircuitBreaker(
                name=f"tool:{tool_name}",
                failure_threshold=self._breaker_threshold,
                reset_timeout=self._breaker_reset,
                clock=self._monotonic,
            )
            self._breakers[tool_name] = b
        return b

    async def execute(self, request: ExecutionRequest) -> ExecutionOutcome:
        started = self._monotonic()
        attempts = _Attempts()
        try:
            content = await self._execute(request, attempts)
        except CircuitOpenError as exc:
            return self._fail(request, started, attempts, ErrorCode.CIRCUIT_OPEN, str(exc))
        except ToolError as exc:
            return self._fail(request, started, attempts, exc.code, str(exc) or exc.code.value)
        except Exception as exc:
            return self._fail(
                request, started, attempts, ErrorCode.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}"
            )
        return ExecutionOutcome(
            call_id=request.call_id,
            ok=True,
            content=content,
            duration_ms=self._elapsed_ms(started),
            attempts=attempts.count,
        )

    async def _execute(self, request: ExecutionRequest, attempts: _Attempts) -> Any:
        spec = self._registry.get(request.tool)
        if request.tool not in request.agent_allowlist:
            raise ToolNotAllowedError(f"tool {request.tool!r} is not on this agent's allowlist")
        if spec.requires_approval and not request.approved:
            raise ApprovalRequiredError(f"tool {request.tool!r} needs an operator's approval")
        args = validate_arguments(spec, request.arguments)
        if request.deadline.tzinfo is None:
            raise InvalidArgumentsError("the call's deadline has no time zone")
        remaining = (request.deadline - self._clock()).total_seconds()
        budget = min(spec.timeout_s, remaining)
        if budget <= 0:
            raise ToolTimeoutError("the call's deadline had passed before it started")
        loop = asyncio.get_running_loop()
        deadline_at = loop.time() + budget
        try:
            async with asyncio.timeout_at(deadline_at):
                result = await self._attempt_loop(spec, args, attempts, deadline_at)
        except TimeoutError:
            raise ToolTimeoutError(
                f"tool {spec.name!r} did not finish within {budget:.3g}s"
            ) from None
        try:
            return to_jsonable_python(result)
        except PydanticSerializationError as exc:
            raise InvalidResultError(
                f"tool {spec.name!r} returned a non-JSON value: {exc}"
            ) from exc

    async def _attempt_loop(
        self, spec: ToolSpec, args: BaseModel, attempts: _Attempts, deadline_at: float
    ) -> Any:
        loop = asyncio.get_running_loop()
        breaker = self.breaker(spec.name)
        while True:
            attempts.count += 1
            try:
                async with self._slot(spec), self._global:
                    breaker.before_call()
                    try:
                        result = await self._invoke(spec, args, deadline_at - loop.time())
                    except asyncio.CancelledError:
                        # Usually our deadline firing: a hung tool is a sick tool.
                        breaker.record_failure()
                        raise
                    except Exception as exc:
                        if not isinstance(exc, ToolError) or exc.counts_against_breaker:
                            breaker.record_failure()
                        else:
                            breaker.record_success()  # healthy: it answered, with a refusal
                        raise
                    breaker.record_success()
                    return result
            except ToolError as exc:
                if not exc.retryable or attempts.count >= spec.retry.max_attempts:
                    raise
                wait = spec.retry.delay(attempts.count, self._rng)
                if loop.time() + wait >= deadline_at:
                    raise  # the deadline would cut the next attempt short anyway
                await self._sleep(wait)

    def _slot(self, spec: ToolSpec) -> asyncio.Semaphore:
        sem = self._per_tool.get(spec.name)
        if sem is None:
            sem = self._per_tool[spec.name] = asyncio.Semaphore(spec.max_concurrency)
        return sem

    async def _invoke(self, spec: ToolSpec, args: BaseModel, budget_s: float) -> Any:
        if spec.sandbox is not None:
            return await sandbox.run_in_sandbox(spec, args, timeout_s=budget_s)
        kwargs = {name: getattr(args, name) for name in type(args).model_fields}
        kwargs.update(args.model_extra or {})  # only schemas that allow extra arguments (MCP)
        if spec.is_async:
            return await spec.fn(**kwargs)
        # A thread keeps the event loop serving; a runaway sync tool cannot be
        # killed here, which is what sandbox=True is for.
        return await asyncio.to_thread(spec.fn, **kwargs)

    def _fail(
        self,
        request: ExecutionRequest,
        started: float,
        attempts: _Attempts,
        code: ErrorCode,
        message: str,
    ) -> ExecutionOutcome:
        return ExecutionOutcome(
            call_id=request.call_id,
            ok=False,
            error_code=code.value,
            error_message=message,
            duration_ms=self._elapsed_ms(started),
            attempts=attempts.count,
        )

    def _elapsed_ms(self, started: float) -> float:
        return round((self._monotonic() - started) * 1000.0, 3)


def validate_arguments(spec: ToolSpec, arguments: Any) -> BaseModel:
    if not isinstance(arguments, dict):
        raise InvalidArgumentsError(
            f"arguments for {spec.name!r} must be a JSON object, got {type(arguments).__name__}"
        )
    try:
        return spec.params_model.model_validate(arguments)
    except ValidationError as exc:
        message, fields = format_validation_error(spec.name, exc)
        raise InvalidArgumentsError(message, fields) from None


def format_validation_error(tool_name: str, exc: ValidationError) -> tuple[str, list[str]]:
    """A short, model-readable list of what is wrong with which argument."""
    lines: list[str] = []
    fields: list[str] = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(arguments)"
        if loc not in fields:
            fields.append(loc)
        lines.append(f"- {loc}: {err['msg']}")
    head = f"invalid arguments for {tool_name!r} ({', '.join(fields)}):"
    return "\n".join([head, *lines]), fields
