"""Canary changes (start, promote, roll back) and the gate's comparison of two versions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from schemas.agents import AgentDefinition, RolloutState
from services.control_plane.canary import (
    CanaryGates,
    VersionFigures,
    compare,
    figures_of,
    promoted,
    rolled_back,
    started,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def newest(version: int = 3) -> AgentDefinition:
    return AgentDefinition(id="a", version=version, instructions="x", model={"name": "m"})


def test_start_promote_and_roll_back() -> None:
    on = started(newest(), candidate=3, stable=2, share=0.2, now=NOW)
    assert on.version == 3 and on.rollout is not None and on.updated_at == NOW
    assert (on.rollout.stable_version, on.rollout.candidate_share) == (2, 0.2)
    with pytest.raises(ValueError, match="already has an active canary"):
        started(on, candidate=3, stable=2, share=0.2, now=NOW)
    back = rolled_back(on, reason="gate failed", now=NOW + timedelta(seconds=1))
    assert back.rollout is not None and back.rollout.state is RolloutState.ROLLED_BACK
    assert back.rollout.reason == "gate failed"
    with pytest.raises(ValueError, match="no active canary"):
        promoted(back, now=NOW)
    assert promoted(on, now=NOW).rollout is None
    again = started(back, candidate=3, stable=2, share=0.5, now=NOW + timedelta(seconds=2))
    assert again.rollout is not None and again.rollout.state is RolloutState.ACTIVE


@pytest.mark.parametrize(("candidate", "stable", "message"), [
    (2, 1, "must be the newest version"),
    (3, 3, "must be older"),
    (3, 4, "must be older"),
])
def test_start_refuses_nonsense(candidate: int, stable: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        started(newest(), candidate=candidate, stable=stable, share=0.1, now=NOW)


def run(status: str, ms: int, tokens: int = 100) -> dict[str, object]:
    return {"status": status, "metrics": {"duration_ms": ms},
            "usage": {"prompt_tokens": tokens, "completion_tokens": 0}}


def test_figures_of_runs_view_documents() -> None:
    docs = [run("completed", 100), run("failed", 300, 50), run("completed", 200),
            {"status": "running"},
            {"status": "cancelled", "created_at": NOW, "ended_at": NOW + timedelta(seconds=1)}]
    f = figures_of(docs)
    assert (f.runs, f.failed, f.p95_ms) == (4, 1, 1000.0)
    assert f.failure_rate == 0.25 and f.tokens_per_run == pytest.approx(250 / 3)
    assert figures_of([]) == VersionFigures()


GATES = CanaryGates(min_runs=3)


def test_compare_passes_similar_versions_and_waits_for_enough_runs() -> None:
    same = VersionFigures(runs=10, failed=0, p95_ms=100, tokens_per_run=100)
    assert compare(same, same, GATES).verdict == "pass"
    few = compare(VersionFigures(runs=2, failed=2), same, GATES)
    assert few.verdict == "inconclusive" and "2 candidate run(s)" in few.reasons[0]


def test_compare_fails_on_failures_latency_or_cost() -> None:
    stable = VersionFigures(runs=10, failed=0, p95_ms=100, tokens_per_run=100)
    failing = compare(VersionFigures(runs=5, failed=5, p95_ms=100, tokens_per_run=100), stable,
                      GATES)
    assert failing.verdict == "fail" and "failure rate 100% vs stable 0%" in failing.reasons[0]
    slow = compare(VersionFigures(runs=5, p95_ms=400, tokens_per_run=100), stable, GATES)
    assert slow.verdict == "fail" and "p95 latency 400 ms" in slow.reasons[0]
    costly = compare(VersionFigures(runs=5, p95_ms=100, tokens_per_run=300), stable, GATES)
    assert costly.verdict == "fail" and "300 tokens/run" in costly.reasons[0]
    # Without enough stable runs, only the failure rate (against zero) is judged.
    lonely = VersionFigures(runs=1, p95_ms=1, tokens_per_run=1)
    assert compare(VersionFigures(runs=5, p95_ms=900, tokens_per_run=900), lonely,
                   GATES).verdict == "pass"
