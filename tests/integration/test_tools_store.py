"""The call ledger on a real MongoDB-wire server: unique starts, first finisher wins."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from services.tools.store import CallStatus, ToolCallStore

pytestmark = pytest.mark.integration

NOW = datetime(2030, 1, 1, tzinfo=UTC)
FIELDS: dict[str, Any] = {"tool": "charge", "agent_id": "a", "run_id": "r", "session_id": "s",
                          "args_digest": "0" * 64, "args_size": 2, "now": NOW}  # fmt: skip


async def test_only_one_concurrent_start_wins(mongo_db: Any) -> None:
    store = ToolCallStore(mongo_db)
    wins = await asyncio.gather(*(store.start("c-1", owner=f"o{i}", **FIELDS) for i in range(5)))
    assert sorted(wins) == [False] * 4 + [True]
    record = await store.get("c-1")
    assert record is not None
    assert (record.status, record.attempts) == (CallStatus.STARTED, 1)
    assert record.owner == f"o{wins.index(True)}"
    doc = await mongo_db[ToolCallStore.CALLS].find_one({"_id": "c-1"})
    assert "arguments" not in doc


async def test_take_over_needs_the_current_owner_and_counts_attempts(mongo_db: Any) -> None:
    store = ToolCallStore(mongo_db)
    await store.start("c-1", owner="crashed", **FIELDS)
    assert await store.take_over("c-1", owner="new", previous="someone-else", now=NOW) is False
    assert await store.take_over("c-1", owner="new", previous="crashed", now=NOW) is True
    record = await store.get("c-1")
    assert record is not None
    assert (record.owner, record.attempts) == ("new", 2)


async def test_the_first_result_stands(mongo_db: Any) -> None:
    store = ToolCallStore(mongo_db)
    await store.start("c-1", owner="o1", **FIELDS)

    def finish(owner: str, content: str) -> Any:
        return store.finish("c-1", owner=owner, tool="charge", attempts=1,
                            result={"content": content}, outcome="ok", duration_ms=3, now=NOW)  # fmt: skip

    assert await finish("o1", "first") is True
    assert await finish("o2", "second") is False
    record = await store.get("c-1")
    assert record is not None
    assert (record.status, record.result, record.outcome) == (
        CallStatus.FINISHED, {"content": "first"}, "ok")  # fmt: skip
    assert await store.get("unknown") is None


async def test_payloads_round_trip_with_their_digest(mongo_db: Any) -> None:
    store = ToolCallStore(mongo_db)
    data = b'"' + b"x" * 100_000 + b'"'
    stored = await store.put_payload("ref-1", "c-1", data, NOW)
    again = await store.put_payload("ref-1", "c-1", b'"other"', NOW)  # written once
    loaded = await store.get_payload("ref-1")
    assert loaded is not None
    assert loaded.data == data
    assert loaded.sha256 == stored.sha256 == again.sha256
