"""Scenario 3: the model endpoint slow, stalling, answering 500 and 429, returning
malformed tool calls; a tool hanging past its deadline.

Every run must still end exactly once, with a reason when it fails, and the
breaker must close again on its own once the endpoint is healthy.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import pytest

from tests.reliability.harness import Harness, ScenarioRun

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(600)]

ALL_500: list[dict[str, Any]] = [{"name": "outage", "status": 500}]
# Two 429s in all: even if one run draws both, its third attempt goes through.
SOME_429: list[dict[str, Any]] = [
    {"name": "rate-limited", "status": 429, "times": 2, "retry_after": 0.2},
]


async def _recovered(run: ScenarioRun, within: float = 60.0) -> float:
    """Seconds until an echo run completes again (the breaker half-opens, then closes)."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        _sent, done = await run.driver.one("s3-recovery", "plain", "echo", timeout=30)
        if done is not None and done.status.value == "completed":
            return round(time.monotonic() - started, 1)
    raise AssertionError(f"the model path did not recover within {within:.0f}s")


async def test_model_and_tool_faults_end_every_run_once(harness: Harness) -> None:
    run = await harness.begin("3-model-and-tool-faults")
    d, model = run.driver, harness.stack.model

    # Faults chosen by input, all at once: a slow model (within the call timeout),
    # a stalled one (past it: retried, then failed), malformed tool-call arguments,
    # a tool that hangs past its own timeout.
    await asyncio.gather(
        *(d.sequential(f"s3-slow{i}", "plain", ["slow"]) for i in range(3)),
        *(d.sequential(f"s3-stall{i}", "plain", ["stall"]) for i in range(2)),
        *(d.sequential(f"s3-bad{i}", "tooly", ["malformed"]) for i in range(2)),
        *(d.sequential(f"s3-hang{i}", "tooly", ["hang", "bump"]) for i in range(2)),
        *(d.sequential(f"s3-ok{i}", "tooly", ["bump"]) for i in range(2)),
    )

    # An outage: every request 500. Runs fail with a reason; the breaker opens and
    # later runs fail fast instead of hanging. Then the endpoint heals.
    await model.set_script(ALL_500)
    try:
        await asyncio.gather(*(d.sequential(f"s3-500-{i}", "plain", ["echo"]) for i in range(6)))
    finally:
        await model.set_script(None)
    run.figures["recover_s"] = await _recovered(run)

    # Rate limiting: a few 429s with Retry-After, absorbed by retries.
    await model.set_script(SOME_429)
    try:
        await asyncio.gather(*(d.sequential(f"s3-429-{i}", "plain", ["echo"]) for i in range(3)))
    finally:
        await model.set_script(None)

    outcomes: dict[str, list[str]] = {}
    for s in run.log.sent:
        done = harness.completions.result(s.run_id)
        outcomes.setdefault(_kind(s.session_id, s.text), []).append(
            done.status.value if done else "none")
    run.figures["outcomes_by_input"] = {k: dict(Counter(v)) for k, v in outcomes.items()}
    # Beyond "ended once": healthy paths complete, broken ones fail with a reason.
    for kind, statuses in outcomes.items():
        if kind in EXPECTED:
            run.expect(set(statuses) == {EXPECTED[kind]},
                       f"{kind}: expected all {EXPECTED[kind]}, got {statuses}")
    await run.finish()


EXPECTED = {"slow": "completed", "stall": "failed", "hang": "completed", "bump": "completed",
            "outage echo": "failed", "rate-limited echo": "completed"}


def _kind(session: str, text: str) -> str:
    verb = text.split(maxsplit=1)[0]
    if session.startswith("s3-500"):
        return f"outage {verb}"
    if session.startswith("s3-429"):
        return f"rate-limited {verb}"
    if session.startswith("s3-recovery"):
        return f"recovery {verb}"
    return verb
