"""The audit log on real Kafka and FerretDB: chained, idempotent, safe under concurrency,
and tamper-evident (verify names the edited or deleted record)."""

from __future__ import annotations

import asyncio
import io
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from mindstream.cli.audit_cmd import matcher, tail
from mindstream.cli.main import main as cli_main
from schemas.audit import AuditEvent, AuditOutcome, AuditTarget
from schemas.common import Actor, ActorKind
from schemas.topics import AUDIT
from services.control_plane.audit_chain import append, verify
from services.control_plane.store import AUDIT_CHAINS, AUDIT_LOG, INDEXES
from shared.mongo import ensure_indexes
from shared.settings import KafkaSettings, MongoSettings
from tests.support.control_plane import running_control_plane

pytestmark = pytest.mark.integration


def event(target: str, *, chain: str = "global", event_id: str | None = None) -> AuditEvent:
    return AuditEvent(event_id=event_id or uuid.uuid4().hex, time=datetime.now(UTC),
                      actor=Actor(kind=ActorKind.SERVICE, id="test"), action="thing.changed",
                      target=AuditTarget(kind="thing", id=target), outcome=AuditOutcome.SUCCESS,
                      chain=chain)


async def test_concurrent_appends_make_one_gapless_chain(mongo_db: Any) -> None:
    await ensure_indexes(mongo_db, INDEXES)
    events = [event(f"t{i}") for i in range(30)]
    results = await asyncio.gather(*(append(mongo_db, e) for e in events))
    assert all(r.created for r in results)
    seqs = sorted([r["seq"] async for r in mongo_db[AUDIT_LOG].find({})])
    assert seqs == list(range(1, 31))
    assert (await verify(mongo_db)).ok


async def test_append_is_idempotent_by_event_id(mongo_db: Any) -> None:
    await ensure_indexes(mongo_db, INDEXES)
    same = event("x", event_id="fixed-id")
    first, again = await append(mongo_db, same), await append(mongo_db, same)
    assert first.created and not again.created
    assert again.record["seq"] == 1
    assert await mongo_db[AUDIT_LOG].count_documents({}) == 1


async def test_a_lagging_head_is_repaired_by_the_next_writer(mongo_db: Any) -> None:
    """A crash between inserting a record and moving the head must not wedge the chain."""
    await ensure_indexes(mongo_db, INDEXES)
    await append(mongo_db, event("a"))
    await append(mongo_db, event("b"))
    await mongo_db[AUDIT_CHAINS].update_one({"_id": "global"}, {"$set": {"seq": 1}})
    await mongo_db[AUDIT_CHAINS].update_one({"_id": "global"}, {"$set": {
        "hash": (await mongo_db[AUDIT_LOG].find_one({"seq": 1}))["hash"]}})
    third = await append(mongo_db, event("c"))
    assert third.record["seq"] == 3
    assert (await verify(mongo_db)).ok


async def test_chains_are_independent(mongo_db: Any) -> None:
    await ensure_indexes(mongo_db, INDEXES)
    for chain in ("global", "tenant-a", "global"):
        await append(mongo_db, event("x", chain=chain))
    report = await verify(mongo_db)
    assert report.ok and report.checked == 3
    assert (await verify(mongo_db, "tenant-a")).checked == 1


async def test_consumed_events_are_chained_and_tampering_is_reported(
    topics: KafkaSettings, mongo_settings: MongoSettings, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with running_control_plane(topics, mongo_settings) as cp:
        publisher = cp.plane.runtime.publisher
        sent = [event(f"subject-{i}") for i in range(12)]  # spread over the 3 partitions
        await asyncio.gather(*(publisher.publish(AUDIT, e, message_id=e.event_id) for e in sent))
        await publisher.publish(AUDIT, sent[0], message_id=sent[0].event_id)  # a redelivery
        records = await cp.wait_audit(12, lambda r: True)
        assert sorted(r["seq"] for r in records) == list(range(1, 13))
        out = io.StringIO()
        printed = await tail(topics, out, follow=False, last=3,
                             matches=matcher("thing.changed", "test", None))
        assert printed == 3 and out.getvalue().count("thing.changed  thing:subject-") == 3
        assert await tail(topics, io.StringIO(), follow=False, last=None,
                          matches=matcher(None, None, "subject-4")) == 1
        assert {r["_id"] for r in records} == {e.event_id for e in sent}
        assert (await verify(cp.db)).ok

        monkeypatch.setenv("MONGODB_URI", mongo_settings.uri.get_secret_value())
        monkeypatch.setenv("MINDSTREAM_DB", mongo_settings.database)
        assert await asyncio.to_thread(cli_main, ["audit", "verify"]) == 0
        assert "intact: 12 record(s)" in capsys.readouterr().out

        log = cp.db[AUDIT_LOG]
        await log.update_one({"seq": 5}, {"$set": {"event.outcome": "refused"}})
        edited = (await log.find_one({"seq": 5}))["_id"]
        report = await verify(cp.db)
        assert not report.ok and report.first_broken is not None
        assert (report.first_broken.seq, report.first_broken.event_id) == (5, edited)
        assert await asyncio.to_thread(cli_main, ["audit", "verify"]) == 1
        out = capsys.readouterr().out.strip()
        assert out.count("\n") == 0
        assert f"seq 5 (event {edited})" in out and "edited" in out

        original = (await log.find_one({"seq": 5}))["event"] | {"outcome": "success"}
        await log.update_one({"seq": 5}, {"$set": {"event": original}})
        assert (await verify(cp.db)).ok
        await log.delete_one({"seq": 8})
        report = await verify(cp.db)
        assert report.first_broken is not None
        assert report.first_broken.seq == 8
        assert "seq 8 missing" in report.first_broken.problem
