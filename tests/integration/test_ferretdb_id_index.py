"""Our FerretDB launcher gives every collection an index on the expression FerretDB's
SQLite backend queries ``_id`` with (deploy/local/ferretdb/idindex.go): without it,
every lookup, update and delete by ``_id`` scans the whole table."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from mindstream.dev import DevSettings
from shared.errors import ConflictError
from shared.mongo import update_if_version, update_versioned
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


def _db_file(name: str) -> Path:
    return DevSettings().data_dir / "ferretdb" / f"{name}.sqlite"


async def _served_by_local_ferretdb(db: Any) -> bool:
    info = await db.client.admin.command("buildInfo")
    return "ferretdbVersion" in info and _db_file(db.name).exists()


def _plan(path: Path, collection: str) -> list[str]:
    """SQLite's plan for the statement FerretDB runs for ``{_id: "..."}``."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        (table,) = con.execute("SELECT table_name FROM _ferretdb_collections WHERE name = ?",
                               (collection,)).fetchone()
        query = (f'EXPLAIN QUERY PLAN SELECT _ferretdb_sjson FROM "{table}" '  # noqa: S608 - SQLite's own name
                 "WHERE _ferretdb_sjson->'$._id' = ?")
        rows = con.execute(query, ('"k-1"',)).fetchall()
        return [str(r[-1]) for r in rows]
    finally:
        con.close()


async def test_new_collections_get_an_id_index_their_queries_use(mongo_db: Any) -> None:
    await mongo_db["things"].insert_many([{"_id": f"k-{i}", "n": i} for i in range(50)])
    if not await _served_by_local_ferretdb(mongo_db):
        pytest.skip("not the local FerretDB launcher (a real mongod indexes _id itself)")
    path = _db_file(mongo_db.name)

    def indexed() -> list[str] | None:  # the launcher sweeps changed files every 250 ms
        plan = _plan(path, "things")
        return plan if any("USING INDEX" in step for step in plan) else None

    plan = await eventually(indexed, what="the _id index used by the query plan",
                            timeout_s=10, every_s=0.1)
    assert any("_mindstream_id" in step for step in plan), plan


async def test_versioned_updates_refuse_stale_versions(mongo_db: Any) -> None:
    """The by-_id read-then-write path FerretDB takes keeps the version contract."""
    await mongo_db["docs"].insert_one({"_id": "d1", "version": 1, "v": "a"})
    doc = await update_versioned(mongo_db, "docs", "d1", 1, {"$set": {"v": "b"}})
    assert (doc["version"], doc["v"]) == (2, "b")
    with pytest.raises(ConflictError):
        await update_versioned(mongo_db, "docs", "d1", 1, {"$set": {"v": "stale"}})
    with pytest.raises(ConflictError):
        await update_versioned(mongo_db, "docs", "missing", 1, {"$set": {"v": "x"}})
    assert await update_if_version(mongo_db, "docs", "d1", 1, {"$set": {"v": "stale"}}) is False
    assert await update_if_version(mongo_db, "docs", "d1", 2, {"$set": {"flag": True}}) is True
    stored = await mongo_db["docs"].find_one({"_id": "d1"})
    assert stored == {"_id": "d1", "version": 2, "v": "b", "flag": True}


async def test_concurrent_versioned_writers_in_one_process_never_both_win(mongo_db: Any) -> None:
    await mongo_db["docs"].insert_one({"_id": "c1", "version": 1, "hits": 0})

    async def attempt() -> bool:
        try:
            await update_versioned(mongo_db, "docs", "c1", 1, {"$inc": {"hits": 1}})
            return True
        except ConflictError:
            return False

    wins = await asyncio.gather(*(attempt() for _ in range(8)))
    assert sum(wins) == 1
    stored = await mongo_db["docs"].find_one({"_id": "c1"})
    assert stored is not None and (stored["version"], stored["hits"]) == (2, 1)
