"""The real path works: Kafka through FastStream, MongoDB through AsyncMongoClient."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from schemas.runs import RunRequested
from schemas.topics import RUNS_REQUESTED
from shared.errors import ConflictError
from shared.kafka.broker import make_broker
from shared.kafka.consumer import ConsumerPipeline, Delivery, subscribe
from shared.kafka.publisher import Publisher
from shared.mongo import IndexSpec, ensure_indexes, update_versioned
from shared.settings import KafkaSettings

pytestmark = pytest.mark.integration


def run_request(session: str = "s-1", text: str = "hello") -> RunRequested:
    return RunRequested(run_id=f"r-{uuid.uuid4().hex[:8]}", agent_id="assistant",
                        session_id=session, user_id="u-1", input=text,
                        requested_at=datetime.now(UTC))


async def test_pydantic_message_round_trip_through_faststream(topics: KafkaSettings) -> None:
    broker = make_broker(topics, "test-roundtrip")
    publisher = Publisher(broker, source="mindstream/test", topic_prefix=topics.topic_prefix)
    received: asyncio.Queue[Delivery[RunRequested]] = asyncio.Queue()

    async def handle(delivery: Delivery[RunRequested]) -> None:
        await received.put(delivery)

    pipeline = ConsumerPipeline(spec=RUNS_REQUESTED, group="test-roundtrip", handler=handle,
                                publisher=publisher, ledger=None)
    subscribe(broker, pipeline, topic_prefix=topics.topic_prefix)
    await broker.start()
    try:
        sent = run_request()
        envelope = await publisher.publish(RUNS_REQUESTED, sent, correlation_id=sent.run_id)
        got = await asyncio.wait_for(received.get(), 30)
    finally:
        await broker.stop()
    assert got.message == sent
    assert got.envelope.id == envelope.id
    assert got.envelope.correlation_id == sent.run_id


async def test_mongo_unique_index_and_optimistic_concurrency(mongo_db: Any) -> None:
    await ensure_indexes(mongo_db, {"things": [IndexSpec([("name", 1)], unique=True)]})
    await ensure_indexes(mongo_db, {"things": [IndexSpec([("name", 1)], unique=True)]})  # idempotent
    await mongo_db.things.insert_one({"_id": "a", "name": "alpha", "version": 1, "n": 0})
    from pymongo.errors import DuplicateKeyError

    with pytest.raises(DuplicateKeyError):
        await mongo_db.things.insert_one({"_id": "b", "name": "alpha", "version": 1})
    found = await mongo_db.things.find_one({"name": "alpha"})
    assert found is not None and found["version"] == 1
    updated = await update_versioned(mongo_db, "things", "a", 1, {"$set": {"n": 1}})
    assert updated["version"] == 2 and updated["n"] == 1
    with pytest.raises(ConflictError):
        await update_versioned(mongo_db, "things", "a", 1, {"$set": {"n": 99}})
    final = await mongo_db.things.find_one({"_id": "a"})
    assert final is not None and final["n"] == 1


async def test_consumer_group_of_two_shares_partitions(infra: Any, topic_prefix: str) -> None:
    topic = f"{topic_prefix}shared"
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 4, 1)])
    await admin.close()
    group = f"{topic_prefix}group"
    members = [AIOKafkaConsumer(topic, bootstrap_servers=infra.kafka_bootstrap, group_id=group,
                                auto_offset_reset="earliest") for _ in range(2)]
    for member in members:
        await member.start()
    try:
        async with asyncio.timeout(30):
            while True:
                await asyncio.gather(*(m.getmany(timeout_ms=100) for m in members))
                assigned = [{tp.partition for tp in m.assignment()} for m in members]
                if all(assigned) and sum(len(a) for a in assigned) == 4:
                    break
    finally:
        for member in members:
            await member.stop()
    assert assigned[0].isdisjoint(assigned[1])
    assert assigned[0] | assigned[1] == {0, 1, 2, 3}


async def test_ttl_retention_holds_even_without_ttl_indexes(mongo_db: Any) -> None:
    """FerretDB has no TTL indexes; the runtime then expires documents by sweeping."""
    from datetime import timedelta

    from shared.mongo import sweep_expired

    spec = IndexSpec([("at", 1)], name="ttl_at", expire_after_seconds=3600)
    unsupported = await ensure_indexes(mongo_db, {"events": [spec]})
    now = datetime.now(UTC)
    await mongo_db.events.insert_many([
        {"_id": "old", "at": now - timedelta(hours=2)}, {"_id": "new", "at": now}])
    if unsupported:
        assert unsupported == [("events", spec)]
        assert await sweep_expired(mongo_db, "events", spec) == 1
        assert [d["_id"] async for d in mongo_db.events.find({})] == ["new"]
    else:  # a real MongoDB: the server's TTL monitor owns retention
        info = await mongo_db.events.index_information()
        assert info["ttl_at"]["expireAfterSeconds"] == 3600
