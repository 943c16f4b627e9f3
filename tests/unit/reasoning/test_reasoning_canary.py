"""Routing a run to the stable or candidate version of a canary, by session."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from schemas.agents import AgentDefinition, Rollout, RolloutState
from services.reasoning.canary import bucket, route
from shared.agent_registry import AgentRegistry

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def definition(version: int, rollout: Rollout | None = None, paused: bool = False) -> AgentDefinition:
    return AgentDefinition(id="a", version=version, instructions=f"v{version}",
                           model={"name": "m"}, rollout=rollout, paused=paused)


def registry(*defs: AgentDefinition) -> AgentRegistry:
    reg = AgentRegistry()
    for d in defs:
        reg.apply(d)
    return reg


def canary(share: float, state: RolloutState = RolloutState.ACTIVE) -> Rollout:
    return Rollout(stable_version=1, candidate_version=2, candidate_share=share, started_at=NOW,
                   state=state)


def test_bucket_is_stable_and_spread() -> None:
    assert bucket("s-1") == bucket("s-1")
    values = [bucket(f"session-{i}") for i in range(2000)]
    assert all(0 <= v < 1 for v in values)
    assert 0.17 < sum(v < 0.2 for v in values) / len(values) < 0.23


def test_a_share_of_sessions_goes_to_the_candidate_and_stays() -> None:
    reg = registry(definition(1), definition(2, canary(0.2)))
    chosen = [route(reg, "a", f"s-{i}") for i in range(1000)]
    assert set(chosen) == {"a@1", "a@2"}
    assert 150 < chosen.count("a@2") < 250
    assert all(route(reg, "a", f"s-{i}") == chosen[i] for i in range(1000))
    assert all((c == "a@2") == (bucket(f"s-{i}") < 0.2) for i, c in enumerate(chosen))


def test_pinned_refs_no_rollout_rolled_back_and_paused() -> None:
    reg = registry(definition(1), definition(2, canary(0.99)))
    assert route(reg, "a@1", "s") == "a@1"
    assert route(reg, "other", "s") == "other"
    assert route(registry(definition(1), definition(2)), "a", "s") == "a"
    back = registry(definition(1), definition(2, canary(0.99, RolloutState.ROLLED_BACK)))
    assert {route(back, "a", f"s-{i}") for i in range(50)} == {"a@1"}
    paused = registry(definition(1), definition(3, canary(0.99), paused=True))
    assert route(paused, "a", "s") == "a"  # the newest answers, and refuses


def test_an_unknown_stable_version_falls_back_to_the_newest() -> None:
    reg = registry(definition(2, canary(0.0)))
    assert route(reg, "a", "s") == "a"
