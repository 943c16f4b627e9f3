"""Retries with backoff and jitter, and circuit breakers, for every outgoing call.

Architecture rule 6: calls to models, tools and HTTP endpoints have timeouts,
bounded concurrency and a circuit breaker, so a sick dependency makes runs
fail fast with a clear reason instead of piling up. Rule 5: transient
failures are retried a bounded number of times with exponential backoff and
full jitter (so retrying replicas do not synchronise into waves).

The clock and the random source are injectable so the behaviour is testable
without sleeping.
"""

from __future__ import annotations

import asyncio
import enum
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

__all__ = [
    "BreakerState",
    "CircuitBreaker",
    "CircuitOpenError",
    "RetryPolicy",
    "retry_async",
]

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How many times and how patiently to retry a transient failure.

    ``max_attempts`` counts the first try: 1 means no retry. The delay before
    attempt ``n+1`` is drawn uniformly from ``[0, min(max_delay, base_delay * 2**n)]``
    ("full jitter"), which spreads retries of many clients evenly.
    """

    max_attempts: int = 3
    base_delay: float = 0.1
    max_delay: float = 5.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("delays must not be negative")

    def delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        ceiling = min(self.max_delay, self.base_delay * float(2 ** (attempt - 1)))
        return ceiling * rng()


async def retry_async(
    fn: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    retry_on: Callable[[BaseException], bool],
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
) -> T:
    """Call ``fn`` until it succeeds, retrying only errors ``retry_on`` accepts.

    A non-retryable error, or the last attempt's error, propagates unchanged so
    the caller can dead-letter it with its real reason.
    """
    attempt = 1
    while True:
        try:
            return await fn()
        except Exception as exc:
            if attempt >= policy.max_attempts or not retry_on(exc):
                raise
            wait = policy.delay(attempt)
            if on_retry is not None:
                on_retry(attempt, exc, wait)
            await sleep(wait)
            attempt += 1


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitOpenError(Exception):
    """Raised instead of calling a dependency whose breaker is open."""

    def __init__(self, name: str, retry_in: float) -> None:
        super().__init__(f"circuit '{name}' is open; retry in {retry_in:.1f}s")
        self.name = name
        self.retry_in = retry_in


@dataclass
class CircuitBreaker:
    """A consecutive-failure breaker with one trial call when half open.

    ``failure_threshold`` consecutive failures open it; after ``reset_timeout``
    seconds one trial call is let through (half open): success closes it,
    failure opens it again for another ``reset_timeout``.
    """

    name: str
    failure_threshold: int = 5
    reset_timeout: float = 30.0
    clock: Callable[[], float] = time.monotonic
    on_state_change: Callable[[str, BreakerState], None] | None = None
    _failures: int = field(default=0, init=False)
    _opened_at: float = field(default=0.0, init=False)
    _state: BreakerState = field(default=BreakerState.CLOSED, init=False)
    _trial_in_flight: bool = field(default=False, init=False)

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.OPEN and self._since_open() >= self.reset_timeout:
            self._set(BreakerState.HALF_OPEN)
        return self._state

    def _since_open(self) -> float:
        return self.clock() - self._opened_at

    def _set(self, state: BreakerState) -> None:
        if state is not self._state:
            self._state = state
            if self.on_state_change is not None:
                self.on_state_change(self.name, state)

    def before_call(self) -> None:
        """Raise :class:`CircuitOpenError` if a call may not go through now."""
        state = self.state
        if state is BreakerState.OPEN:
            raise CircuitOpenError(self.name, self.reset_timeout - self._since_open())
        if state is BreakerState.HALF_OPEN:
            if self._trial_in_flight:
                raise CircuitOpenError(self.name, 0.0)
            self._trial_in_flight = True

    def record_success(self) -> None:
        self._failures = 0
        self._trial_in_flight = False
        self._set(BreakerState.CLOSED)

    def record_failure(self) -> None:
        self._trial_in_flight = False
        self._failures += 1
        if self._state is BreakerState.HALF_OPEN or self._failures >= self.failure_threshold:
            self._opened_at = self.clock()
            self._set(BreakerState.OPEN)

    async def call(
        self,
        fn: Callable[[], Awaitable[T]],
        *,
        counts_as_failure: Callable[[BaseException], bool] = lambda _e: True,
    ) -> T:
        """Run ``fn`` through the breaker.

        Errors for which ``counts_as_failure`` is false (a 400 from a model,
        say: the dependency is healthy, the request was bad) pass through
        without moving the breaker.
        """
        self.before_call()
        try:
            result = await fn()
        except BaseException as exc:
            if isinstance(exc, Exception) and counts_as_failure(exc):
                self.record_failure()
            else:
                self._trial_in_flight = False
            raise
        self.record_success()
        return result
