"""Adaptive limit and admission of model calls: priorities, early refusal, AIMD."""

from __future__ import annotations

import asyncio

import pytest

from services.reasoning.overload import Admission, AimdLimit, OverloadConfig, Overloaded

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_aimd_cuts_on_trouble_once_per_cooldown_and_grows_slowly() -> None:
    clock = Clock()
    limit = AimdLimit(OverloadConfig(min_limit=2, max_limit=10, target_latency_s=1.0,
                                     decrease_factor=0.5, cooldown_s=5.0), clock)
    assert limit.value == 10
    limit.record(0.1, ok=False)
    assert limit.value == 5
    limit.record(3.0, ok=True)  # slow, but within the cooldown of the last cut
    assert limit.value == 5
    clock.now += 5
    limit.record(3.0, ok=True)
    assert limit.value == 2  # 2.5 floored
    clock.now += 5
    limit.record(0.1, ok=False)
    assert limit.value == 2  # never below min_limit
    for _ in range(6):
        limit.record(0.1, ok=True)
    assert limit.value == 4  # +1/limit per healthy call
    for _ in range(100):
        limit.record(0.1, ok=True)
    assert limit.value == 10


def test_config_is_checked() -> None:
    with pytest.raises(ValueError, match="min_limit"):
        OverloadConfig(min_limit=3, max_limit=2)
    with pytest.raises(ValueError, match="each of high, normal, low"):
        OverloadConfig(queue={"high": 1})


async def test_low_priority_is_refused_at_once_when_saturated_and_high_waits_its_turn() -> None:
    gate = Admission(OverloadConfig(min_limit=1, max_limit=1))
    order: list[str] = []
    release = asyncio.Event()

    async def call(name: str, priority: str, *, continuing: bool = False) -> None:
        async with gate.slot(priority, continuing=continuing):
            order.append(name)
            await release.wait()

    first = asyncio.create_task(call("first", "normal"))
    await asyncio.sleep(0)
    assert gate.in_flight == 1
    with pytest.raises(Overloaded, match=r"^overloaded: 1 model calls in flight \(limit 1\)"):
        await call("low", "low")
    assert gate.refused == 1
    waiting = [asyncio.create_task(call("normal", "normal")),
               asyncio.create_task(call("high", "high")),
               asyncio.create_task(call("continuing", "low", continuing=True))]
    await asyncio.sleep(0)
    assert gate.queued() == 3
    release.set()
    await asyncio.gather(first, *waiting)
    assert order == ["first", "continuing", "high", "normal"]
    assert gate.in_flight == 0 and gate.queued() == 0


async def test_a_new_run_waits_only_so_long_for_its_class() -> None:
    gate = Admission(OverloadConfig(min_limit=1, max_limit=1,
                                    queue={"high": 1, "normal": 1, "low": 1},
                                    max_wait_s={"high": 5.0, "normal": 5.0, "low": 0.01}))
    hold = asyncio.Event()

    async def busy() -> None:
        async with gate.slot("high"):
            await hold.wait()

    task = asyncio.create_task(busy())
    await asyncio.sleep(0)
    with pytest.raises(Overloaded, match=r"no model slot within 0\.01s for low priority"):
        async with gate.slot("low"):
            pass
    assert gate.queued() == 0
    hold.set()
    await task
    async with gate.slot("low"):
        assert gate.in_flight == 1


async def test_capacity_errors_shrink_the_limit_and_cancellation_gives_the_slot_back() -> None:
    gate = Admission(OverloadConfig(min_limit=1, max_limit=4, decrease_factor=0.5),
                     is_overload=lambda exc: isinstance(exc, TimeoutError))
    with pytest.raises(TimeoutError):
        async with gate.slot("normal"):
            raise TimeoutError
    assert gate.limit.value == 2
    with pytest.raises(ValueError, match="bad request"):
        async with gate.slot("normal"):
            raise ValueError("bad request")  # not a capacity signal
    assert gate.limit.value == 2

    hold = asyncio.Event()

    async def holder() -> None:
        async with gate.slot("normal"):
            await hold.wait()

    holders = [asyncio.create_task(holder()) for _ in range(2)]
    await asyncio.sleep(0)
    queued = asyncio.create_task(holder())
    await asyncio.sleep(0)
    assert gate.queued() == 1
    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    assert gate.queued() == 0
    hold.set()
    await asyncio.gather(*holders)
    assert gate.in_flight == 0
