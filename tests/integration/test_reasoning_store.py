"""The run store's model-call claims on a real MongoDB-wire server."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.reasoning.state import ModelClaim, RunState, RunStatus
from services.reasoning.store import INDEXES, RunStore
from shared.errors import ConflictError
from shared.mongo import ensure_indexes

pytestmark = pytest.mark.integration

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def _run(run_id: str = "run-1") -> RunState:
    return RunState(run_id=run_id, session_id="s-1", agent_id="a", user_id="u",
                    status=RunStatus.RUNNING, created_at=NOW, updated_at=NOW)


def _claimed(run: RunState, owner: str, until: datetime) -> RunState:
    claimed = run.model_copy(deep=True)
    claimed.model_claim = ModelClaim(owner=owner, until=until)
    return claimed


async def test_of_two_claims_on_one_version_one_is_stored(mongo_db: Any) -> None:
    await ensure_indexes(mongo_db, INDEXES)
    store = RunStore(mongo_db)
    run = _run()
    assert await store.create(run, [])
    outcomes = await asyncio.gather(
        *(store.save(run.version, _claimed(run, f"p{i}", NOW), None) for i in range(4)),
        return_exceptions=True)
    assert sum(isinstance(o, ConflictError) for o in outcomes) == 3
    (winner,) = [o for o in outcomes if isinstance(o, RunState)]
    stored = await store.get("run-1")
    assert stored is not None and stored.state.model_claim == winner.model_claim


async def test_a_claim_is_extended_in_place_and_lapsed_claims_are_found(mongo_db: Any) -> None:
    store = RunStore(mongo_db)
    quiet, busy = _run("run-quiet"), _run("run-busy")
    for run in (quiet, busy):
        await store.create(run, [])
    held = [await store.save(r.version, _claimed(r, "p1", NOW + timedelta(seconds=30)), None)
            for r in (quiet, busy)]
    assert await store.extend_claim("run-busy", held[1].version, NOW + timedelta(seconds=90))
    assert not await store.extend_claim("run-busy", held[1].version - 1, NOW)  # stale version
    stored = await store.get("run-busy")
    assert stored is not None and stored.state.version == held[1].version  # no new version
    assert stored.state.model_claim is not None
    assert stored.state.model_claim.until == NOW + timedelta(seconds=90)
    stalled = [(await store.sweepable(now, [], NOW)).stalled
               for now in (NOW + timedelta(seconds=60), NOW + timedelta(seconds=91), NOW)]
    assert stalled[0] == ["run-quiet"]
    assert sorted(stalled[1]) == ["run-busy", "run-quiet"]
    assert stalled[2] == []
