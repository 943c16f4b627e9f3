"""Stopping asyncio tasks for real.

One ``task.cancel()`` is not always enough on Python 3.11: ``asyncio.wait_for``
(used by the MongoDB driver on every socket send, and by aiokafka) returns the
result instead of raising when a cancel races the awaited operation's
completion, so a loop can swallow its only cancel and carry on. A CI run hung
300 s in a service's stop that way. :func:`cancel_and_wait` cancels again
until the tasks end, and gives up after a bound: a stop must finish within the
pod's grace period.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

__all__ = ["await_chain", "cancel_and_wait", "where"]


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]], *, timeout_s: float,
                          every_s: float = 0.25) -> set[asyncio.Task[Any]]:
    """Cancel ``tasks`` and wait until they end, cancelling again every ``every_s``;
    the tasks still running after ``timeout_s`` (left running: the caller reports)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    pending = {t for t in tasks if not t.done()}
    while pending:
        for task in pending:
            task.cancel()
        left = deadline - loop.time()
        if left <= 0:
            break
        _, pending = await asyncio.wait(pending, timeout=min(every_s, left))
    return pending


def await_chain(task: asyncio.Task[Any]) -> list[str]:
    """Where a task is suspended, ``file:line in function``, outermost first, through
    every coroutine it awaits (``Task.get_stack`` shows only the outermost frame)."""
    lines: list[str] = []
    coro: Any = task.get_coro()
    while coro is not None and len(lines) < 60:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            lines.append(repr(coro)[:300])  # a future or a C-level awaitable
            break
        lines.append(f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return lines


def where(task: asyncio.Task[Any]) -> str:
    """:func:`await_chain` on one line (for a log record)."""
    return " > ".join(await_chain(task)) or "?"
