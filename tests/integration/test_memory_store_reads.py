"""Recording a turn reads the session once: what the store inserted or just read is not
read back (each read is a round trip, and the database is the bottleneck on FerretDB)."""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from pymongo import AsyncMongoClient, monitoring

from services.memory.store import INDEXES, MemoryStore
from shared.mongo import ensure_indexes
from shared.settings import MongoSettings

pytestmark = pytest.mark.integration

AT = datetime(2030, 1, 1, tzinfo=UTC)


class Commands(monitoring.CommandListener):
    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()

    def started(self, event: Any) -> None:
        self.counts[f"{event.command_name}:{event.command.get(event.command_name)}"] += 1

    def succeeded(self, event: Any) -> None:
        return None

    def failed(self, event: Any) -> None:
        return None


@pytest.fixture
async def counted(mongo_settings: MongoSettings) -> AsyncIterator[tuple[MemoryStore, Commands]]:
    commands = Commands()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        mongo_settings.uri.get_secret_value(), tz_aware=True, event_listeners=[commands])
    db = client[mongo_settings.database]
    await ensure_indexes(db, INDEXES)
    yield MemoryStore(db), commands
    await client.drop_database(mongo_settings.database)
    await client.close()


def turn(run_id: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": f"hi from {run_id}"},
            {"role": "assistant", "content": "hello"}]


async def test_a_turn_reads_its_session_once_new_or_not(
    counted: tuple[MemoryStore, Commands],
) -> None:
    store, commands = counted
    for n, run_id in enumerate(["run-1", "run-2"]):
        commands.counts.clear()
        recorded = await store.record_turn(session_id="s-1", run_id=run_id, user_id="u-1",
                                           agent_id="a", messages=turn(run_id), at=AT)
        assert recorded.created and recorded.start == 2 * n
        assert recorded.session is not None and recorded.session.next_seq == 2 * n + 2
        # one read by ensure_session; on FerretDB the versioned cache update adds its own
        # version read by _id (shared.mongo), which is not a read of what we already had
        version_reads = commands.counts["findAndModify:sessions"]
        assert commands.counts["find:sessions"] <= 1 + version_reads, commands.counts
    history = await store.history("s-1")
    assert [m.run_id for m in history] == ["run-1", "run-1", "run-2", "run-2"]
    state = await store.get_session("s-1")
    assert state is not None and state.recent_runs[-1][0] == "run-2"
