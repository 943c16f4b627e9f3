"""Periodic background work that never takes more than a share of the time.

A sweeper that looks for overdue runs every second is cheap on MongoDB, where
its queries use indexes, and expensive on FerretDB 1.x, where any filter but
``{_id: ...}`` scans the whole collection: with a few thousand runs, three
scans a second kept the database busy (and every run waiting on it slower).
Pacing by the step's own duration keeps the period on a fast backend and
stretches it on a slow one, so background work stays a small share of the
database's time whatever the collection size.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

__all__ = ["pause_after", "run_paced"]


def pause_after(took_s: float, interval_s: float, max_share: float) -> float:
    """How long to wait after a step that took ``took_s``: at least ``interval_s``, and
    long enough that steps take at most ``max_share`` of the wall time."""
    if not 0 < max_share <= 1:
        raise ValueError("max_share must be in (0, 1]")
    return max(interval_s, took_s * (1 - max_share) / max_share)


async def run_paced(step: Callable[[], Awaitable[object]], *, interval_s: float,
                    max_share: float, clock: Callable[[], float] = time.monotonic,
                    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
    """Run ``step`` forever, paced by :func:`pause_after` (cancel to stop)."""
    while True:
        started = clock()
        await step()
        await sleep(pause_after(clock() - started, interval_s, max_share))
