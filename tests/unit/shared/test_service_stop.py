"""A service's stop ends its background loops, even ones that swallow a cancel."""

from __future__ import annotations

import asyncio
import logging

import pytest

from shared.service import ServiceRuntime
from shared.settings import KafkaSettings, MongoSettings


def _runtime() -> ServiceRuntime:
    return ServiceRuntime("stubborn", kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1"),
                          mongo=MongoSettings(uri="mongodb://127.0.0.1:1"))


async def _swallows(times: int | None, started: asyncio.Event) -> None:
    """A loop that swallows ``times`` cancels (None: all), as asyncio.wait_for does on
    Python 3.11 when a cancel races the awaited operation's completion."""
    started.set()
    swallowed = 0
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            swallowed += 1
            if times is not None and swallowed > times:
                raise


async def _stop_with(runtime: ServiceRuntime, loop_body: asyncio.Task[None],
                     started: asyncio.Event) -> None:
    runtime._tasks.append(loop_body)  # what start() does for each registered loop
    await started.wait()
    async with asyncio.timeout(10):
        await runtime.stop()


async def test_stop_cancels_again_a_loop_that_swallowed_its_cancel(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runtime, started = _runtime(), asyncio.Event()
    task = asyncio.create_task(_swallows(1, started))
    with caplog.at_level(logging.ERROR, logger="mindstream.service"):
        await _stop_with(runtime, task, started)
    assert task.cancelled()
    assert "did not stop" not in caplog.text


async def test_stop_leaves_a_loop_that_never_stops_and_says_where_it_is(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runtime, started = _runtime(), asyncio.Event()
    runtime.stop_background_timeout_s = 0.5
    task = asyncio.create_task(_swallows(None, started))
    with caplog.at_level(logging.ERROR, logger="mindstream.service"):
        await _stop_with(runtime, task, started)
    assert "did not stop within" in caplog.text
    assert "test_service_stop.py" in caplog.text
    assert not task.done()
    task.get_coro().close()  # type: ignore[union-attr]
