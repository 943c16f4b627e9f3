"""Background steps keep their period when fast and stay a bounded share when slow."""

from __future__ import annotations

import asyncio

import pytest

from shared.pacing import pause_after, run_paced

pytestmark = pytest.mark.unit


def test_a_fast_step_keeps_the_interval() -> None:
    assert pause_after(0.002, 1.0, 0.05) == 1.0


def test_a_slow_step_is_followed_by_a_pause_that_bounds_its_share() -> None:
    pause = pause_after(0.5, 1.0, 0.05)
    assert pause == pytest.approx(9.5)
    assert 0.5 / (0.5 + pause) == pytest.approx(0.05)


@pytest.mark.parametrize("share", [0.0, -0.1, 1.5])
def test_a_share_outside_0_1_is_refused(share: float) -> None:
    with pytest.raises(ValueError, match="max_share"):
        pause_after(0.1, 1.0, share)


async def test_run_paced_sleeps_by_what_each_step_took() -> None:
    now = [0.0]
    durations = iter([0.01, 0.4, 0.01])
    pauses: list[float] = []

    async def step() -> None:
        now[0] += next(durations)

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 3:
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await run_paced(step, interval_s=1.0, max_share=0.1, clock=lambda: now[0], sleep=sleep)
    assert pauses == pytest.approx([1.0, 3.6, 1.0])
