"""Scenario 0, the control: steady mixed load with no fault. The checker must find
nothing here, or its findings elsewhere mean nothing."""

from __future__ import annotations

import asyncio

import pytest

from tests.reliability.harness import Harness

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(600)]


async def test_baseline_mixed_load_keeps_every_promise(harness: Harness) -> None:
    run = await harness.begin("0-baseline")
    d = run.driver
    await asyncio.gather(
        *(d.ordered(f"s0-o{i}", "plain", ["echo"] * 4) for i in range(3)),
        *(d.sequential(f"s0-t{i}", "tooly", ["bump"] * 2) for i in range(3)),
        *(d.workflow(f"s0-w{i}", "relay") for i in range(3)),
    )
    await run.finish()
