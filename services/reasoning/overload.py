"""Overload protection for model calls: an adaptive limit, priority classes, early refusal.

Model calls are the slow, costly step of a run. Under a burst beyond capacity,
letting every run queue means every run times out late; instead:

- **Adaptive concurrency (AIMD).** At most ``limit`` model calls are in flight
  per replica. A call that fails for capacity reasons (endpoint unavailable,
  timed out, rate limited, breaker open) or takes longer than
  ``target_latency_s`` cuts the limit by ``decrease_factor`` (at most once per
  ``cooldown_s``: one burst of slow calls is one signal); a healthy call raises
  it by ``1/limit`` (about +1 per limit's worth of healthy calls).
- **Priority classes.** A call that cannot start waits in a queue ordered by
  class: calls of runs already under way first (their earlier steps are spent
  work), then ``high``, ``normal``, ``low`` (``RunRequested.priority``), first
  come first served within a class.
- **Early refusal.** A run's *first* model call is refused at once when its
  class's queue is full (``queue``; low priority gets none by default, so it is
  refused as soon as the limit is reached), or when it waited ``max_wait_s``
  for its class. The run then fails with reason ``overloaded: ...`` within
  moments, rather than by its deadline. Calls of runs under way are never
  refused here.

Off unless configured (:class:`OverloadConfig` from the service settings).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

__all__ = ["PRIORITIES", "Admission", "AimdLimit", "OverloadConfig", "Overloaded"]

PRIORITIES = ("high", "normal", "low")
_RANK = {"high": 1, "normal": 2, "low": 3}
_CONTINUING = 0  # a run under way: ahead of every class, never refused


class Overloaded(Exception):
    """No model capacity for a new run now; the run fails fast with this reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class OverloadConfig:
    min_limit: int = 1
    max_limit: int = 16
    initial_limit: int | None = None  # None: start at max_limit
    target_latency_s: float = 20.0
    decrease_factor: float = 0.7
    cooldown_s: float = 2.0
    queue: dict[str, int] = field(default_factory=lambda: {"high": 64, "normal": 16, "low": 0})
    max_wait_s: dict[str, float] = field(
        default_factory=lambda: {"high": 60.0, "normal": 10.0, "low": 2.0})

    def __post_init__(self) -> None:
        if not 1 <= self.min_limit <= self.max_limit:
            raise ValueError("need 1 <= min_limit <= max_limit")
        if not 0 < self.decrease_factor < 1:
            raise ValueError("decrease_factor must be between 0 and 1")
        for table in (self.queue, self.max_wait_s):
            if set(table) != set(PRIORITIES):
                raise ValueError(f"give a value for each of {', '.join(PRIORITIES)}")


class AimdLimit:
    """Additive increase, multiplicative decrease of a concurrency limit."""

    def __init__(self, config: OverloadConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self._cfg, self._clock = config, clock
        self._value = float(config.initial_limit or config.max_limit)
        self._value = min(max(self._value, config.min_limit), config.max_limit)
        self._last_cut = -float("inf")

    @property
    def value(self) -> int:
        return max(self._cfg.min_limit, int(self._value))

    def record(self, latency_s: float, ok: bool) -> None:
        cfg = self._cfg
        if ok and latency_s <= cfg.target_latency_s:
            self._value = min(cfg.max_limit, self._value + 1 / max(1.0, self._value))
            return
        now = self._clock()
        if now - self._last_cut >= cfg.cooldown_s:
            self._last_cut = now
            self._value = max(float(cfg.min_limit), self._value * cfg.decrease_factor)


@dataclass(order=True)
class _Waiter:
    rank: int
    seq: int
    future: asyncio.Future[None] = field(compare=False)
    priority: str = field(compare=False)


class Admission:
    """Grants model-call slots under an :class:`AimdLimit`, by priority; refuses early."""

    def __init__(self, config: OverloadConfig, *, clock: Callable[[], float] = time.monotonic,
                 is_overload: Callable[[BaseException], bool] = lambda exc: False) -> None:
        self.config = config
        self.limit = AimdLimit(config, clock)
        self._clock, self._is_overload = clock, is_overload
        self.in_flight = 0
        self.refused = 0
        self._queue: list[_Waiter] = []
        self._seq = itertools.count()

    def queued(self, priority: str | None = None) -> int:
        return sum(1 for w in self._queue if priority is None or (
            w.priority == priority and w.rank != _CONTINUING))

    def _refuse(self, why: str) -> Overloaded:
        self.refused += 1
        return Overloaded(f"overloaded: {why}; retry later")

    def _wake(self) -> None:
        while self._queue and self.in_flight < self.limit.value:
            waiter = heapq.heappop(self._queue)
            if not waiter.future.done():
                self.in_flight += 1  # handed over: the waiter owns the slot now
                waiter.future.set_result(None)

    async def _acquire(self, priority: str, continuing: bool) -> None:
        if priority not in _RANK:
            priority = "normal"
        if self.in_flight < self.limit.value and not self._queue:
            self.in_flight += 1
            return
        if not continuing and self.queued(priority) >= self.config.queue[priority]:
            raise self._refuse(f"{self.in_flight} model calls in flight (limit {self.limit.value}),"
                               f" {self.queued()} waiting; no room for {priority} priority")
        waiter = _Waiter(_CONTINUING if continuing else _RANK[priority], next(self._seq),
                         asyncio.get_running_loop().create_future(), priority)
        heapq.heappush(self._queue, waiter)
        wait = None if continuing else self.config.max_wait_s[priority]
        try:
            await asyncio.wait_for(asyncio.shield(waiter.future), wait)
        except TimeoutError:
            if waiter.future.done():  # granted just as the wait ran out: keep the slot
                return
            waiter.future.cancel()
            self._queue.remove(waiter)
            heapq.heapify(self._queue)
            raise self._refuse(f"no model slot within {wait:g}s for {priority} priority "
                               f"(limit {self.limit.value})") from None
        except BaseException:
            if waiter.future.done() and not waiter.future.cancelled():
                self.in_flight -= 1  # granted, then cancelled before use: give it back
                self._wake()
            else:
                waiter.future.cancel()
                if waiter in self._queue:
                    self._queue.remove(waiter)
                    heapq.heapify(self._queue)
            raise

    @asynccontextmanager
    async def slot(self, priority: str, *, continuing: bool = False) -> AsyncIterator[None]:
        """Hold one model-call slot; raises :class:`Overloaded` when a new run must wait no more."""
        await self._acquire(priority, continuing)
        started = self._clock()
        sample: bool | None = True  # None: no signal (the call was cancelled)
        try:
            yield
        except Exception as exc:
            sample = not self._is_overload(exc)
            raise
        except BaseException:
            sample = None
            raise
        finally:
            if sample is not None:
                self.limit.record(self._clock() - started, sample)
            self.in_flight -= 1
            self._wake()
