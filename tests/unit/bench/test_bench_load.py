"""Completeness: every submitted run has exactly one RunCompleted, copies aside."""

from __future__ import annotations

import pytest

from mindstream.bench.capture import Captured
from mindstream.bench.config import FULL, QUICK, SMOKE, BenchConfig
from mindstream.bench.load import RunSample, StepResult, check_completeness

pytestmark = pytest.mark.unit


def done(run_id: str, ce_id: str) -> Captured:
    return Captured("p.mindstream.runs.completed.v1", "s", ce_id, "t", run_id, "", b"")


def test_all_answered_once() -> None:
    result = check_completeness(["a", "b"], [done("a", "1"), done("b", "2"), done("zz", "3")])
    assert result.ok and result.completed_once == 2 and result.as_dict()["lost"] == 0


def test_lost_conflicting_and_redelivered_are_told_apart() -> None:
    records = [done("a", "1"), done("a", "1"), done("b", "2"), done("b", "9")]
    result = check_completeness(["a", "b", "c", "c"], records)
    assert result.submitted == 3
    assert result.lost == ["c"]
    assert result.conflicting == ["b"]
    assert result.redelivered == 1
    assert result.completed_once == 1
    assert not result.ok


def test_step_figures() -> None:
    step = StepResult(offered_rate=10, duration_s=1.0, samples=[
        RunSample("a", scheduled=100.0, received=100.05, status="completed"),
        RunSample("b", scheduled=100.1, received=100.3, status="completed"),
        RunSample("c", scheduled=100.2, status="timeout"),
    ])
    assert step.latencies_ms == pytest.approx([50.0, 200.0])
    d = step.as_dict()
    assert (d["submitted"], d["completed"], d["timeouts"], d["failed"]) == (3, 2, 1, 0)
    assert d["achieved_rate"] == pytest.approx(2.0)


def test_configs_are_consistent() -> None:
    for config in (FULL, QUICK, SMOKE):
        assert config.as_dict()["rates"] == list(config.rates)
    assert FULL.with_overrides(bound_ms=None, step_s=2.0).step_s == 2.0
    with pytest.raises(ValueError, match="ascending"):
        BenchConfig(mode="x", latency_runs=1, latency_max_s=1, warmup_runs=0, floor_samples=1,
                    rates=(20, 10), step_s=1, phase_budget_s=1)
