"""Waiting for state that announces nothing: the one polling helper of the tests.

Prefer awaiting an event (a message on a topic, a future). Some state has no
event to await: documents in MongoDB (FerretDB has no change streams), read
models behind an HTTP API, Prometheus scrapes, consumer-group lag. For those,
:func:`eventually` polls, bounded, and says what it waited for when it gives up.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

__all__ = ["eventually"]

T = TypeVar("T")


@overload
async def eventually(check: Callable[[], Awaitable[T]], *, what: str,
                     timeout_s: float = ..., every_s: float = ...) -> T: ...
@overload
async def eventually(check: Callable[[], T], *, what: str,
                     timeout_s: float = ..., every_s: float = ...) -> T: ...


async def eventually(check: Callable[[], Any], *, what: str,
                     timeout_s: float = 30.0, every_s: float = 0.05) -> Any:
    """Call ``check`` (sync or async) until it returns something truthy; return that.

    Raises ``AssertionError`` naming ``what`` (and the last value seen) after
    ``timeout_s``.
    """
    last: object = None
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                value = check()
                if inspect.isawaitable(value):
                    value = await value
                if value:
                    return value
                last = value
                await asyncio.sleep(every_s)
    except TimeoutError:
        raise AssertionError(f"{what}: not reached within {timeout_s:g}s "
                             f"(last seen: {last!r:.300})") from None
