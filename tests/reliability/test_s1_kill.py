"""Scenario 1: kill -9 each service in turn under load and restart it; then every service
gets a second replica and a "node" dies taking one replica of each (the survivors rebalance).

Recovery time is measured with probe runs sent right after each kill: the time
until the probe's result arrives covers the restart (or the rebalance) and the
backlog in front of it.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.reliability.harness import Harness, ScenarioRun
from tests.reliability.stack import CORE_SERVICES

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(600)]

REPLICATED = ("memory", "reasoning", "tools", "telemetry", "control-plane", "workflows")


async def _probe(run: ScenarioRun, tag: str, sessions: int = 1) -> float:
    """Seconds until fresh runs (an echo, a tool call and a workflow per session) all end."""
    started = time.monotonic()
    await asyncio.gather(
        *(run.driver.one(f"s1-probe-{tag}-{i}", agent, verb, timeout=120)
          for i in range(sessions) for agent, verb in (("plain", "echo"), ("tooly", "bump"))),
        *(run.driver.workflow(f"s1-probe-{tag}-w{i}", "relay", timeout=120)
          for i in range(sessions)))
    return round(time.monotonic() - started, 1)


async def test_kill_9_each_service_then_lose_one_of_two_replicas(harness: Harness) -> None:
    run = await harness.begin("1-kill-9-and-rebalance")
    stack, completions, d = harness.stack, harness.completions, run.driver
    stop = asyncio.Event()

    async def work(n: int) -> None:
        if n % 3 == 1:
            await d.sequential(f"s1-t{n}", "tooly", ["bump", "bump"])
        elif n % 3 == 2:
            await d.workflow(f"s1-w{n}", "relay")
        else:
            await d.ordered(f"s1-o{n}", "plain", ["echo"] * 3)

    load = asyncio.create_task(d.until(stop, work, workers=4))
    kills: dict[str, dict[str, float]] = {}
    try:
        for name in CORE_SERVICES:
            await completions.progressed(4)  # the load is flowing: the kill lands mid-work
            (instance,) = stack.of(name)
            stack.kill(instance)
            probe = asyncio.create_task(_probe(run, name))
            ready_s = await stack.restart(instance)
            kills[name] = {"ready_s": round(ready_s, 1), "probe_s": await probe}

        extra = [stack.add(name, f"{name}-b") for name in REPLICATED]
        await stack.wait_ready(extra)
        await completions.progressed(6)
        for name in REPLICATED:  # one "node" goes: the first replica of each
            stack.kill(f"{name}-1")
        kills["one of two replicas each"] = {"probe_s": await _probe(run, "rebalance", 4)}
        await completions.progressed(6)
    finally:
        stop.set()
        await load
    for name in REPLICATED:  # the survivors carry on as the stack's only replicas
        stack.instances.pop(f"{name}-1", None)
    run.figures["kills"] = kills
    run.figures["recover_s"] = max(k["probe_s"] for k in kills.values())
    await run.finish()
