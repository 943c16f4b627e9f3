"""The consumer pipeline on a real broker and a real MongoDB-wire server.

Poison messages go to the dead-letter topic and consumption goes on;
transient failures are retried; a redelivery after a crash between effect and
commit is not processed twice; shutdown mid-handler commits nothing.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.codec import encode
from schemas.envelope import Envelope
from schemas.runs import RunRequested
from schemas.topics import RUNS_REQUESTED
from shared.errors import PermanentError
from shared.kafka.broker import make_broker
from shared.kafka.consumer import ConsumerPipeline, Delivery, Outcome, subscribe
from shared.kafka.publisher import Publisher
from shared.mongo import ProcessedLedger
from shared.resilience import RetryPolicy
from shared.settings import KafkaSettings
from tests.support.kafka import collect, header

pytestmark = pytest.mark.integration


def request(text: str = "hello", session: str = "s-1") -> RunRequested:
    return RunRequested(run_id=f"r-{uuid.uuid4().hex[:8]}", agent_id="assistant",
                        session_id=session, user_id="u-1", input=text,
                        requested_at=datetime.now(UTC))


class Harness:
    """A broker with one pipeline on runs.requested, recording what it handled."""

    def __init__(self, kafka: KafkaSettings, group: str, handler: Any = None,
                 ledger: ProcessedLedger | None = None, graceful_timeout_s: float = 20.0) -> None:
        self.handled: asyncio.Queue[RunRequested] = asyncio.Queue()
        self.broker = make_broker(kafka, group, graceful_timeout_s=graceful_timeout_s)
        self.publisher = Publisher(self.broker, source="mindstream/test", topic_prefix=kafka.topic_prefix)

        async def record(delivery: Delivery[RunRequested]) -> None:
            await self.handled.put(delivery.message)

        self.pipeline = ConsumerPipeline(
            spec=RUNS_REQUESTED, group=group, handler=handler or record, publisher=self.publisher,
            ledger=ledger, retry=RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05))
        subscribe(self.broker, self.pipeline, topic_prefix=kafka.topic_prefix)


@pytest.fixture
async def harness(topics: KafkaSettings) -> AsyncIterator[Harness]:
    h = Harness(topics, f"{topics.topic_prefix}g")
    await h.broker.start()
    yield h
    await h.broker.stop()


async def send_raw(h: Harness, topic: str, body: bytes, headers: list[tuple[str, bytes]]) -> None:
    await h.publisher.send_raw(topic, body, key=b"s-1", headers=headers)


async def test_poison_message_is_dead_lettered_and_consumption_goes_on(
        harness: Harness, topics: KafkaSettings) -> None:
    topic = RUNS_REQUESTED.physical(topics.topic_prefix)
    good = request("after the poison")
    envelope = Envelope.new(good, source="mindstream/test")
    await send_raw(harness, topic, b'{"run_id": 42', envelope.to_headers())
    await harness.publisher.publish(RUNS_REQUESTED, good)
    assert await asyncio.wait_for(harness.handled.get(), 30) == good
    [dead] = await collect(topics.bootstrap_servers, topic + ".dlq", 1)
    assert dead.value == b'{"run_id": 42'
    assert "invalid JSON" in (header(dead, "dlq_reason") or "")
    assert header(dead, "dlq_topic") == topic
    assert header(dead, "dlq_partition") is not None and header(dead, "dlq_offset") is not None
    assert header(dead, "ce_id") == envelope.id  # original headers are kept


async def test_transient_failures_are_retried_then_processed_once(topics: KafkaSettings) -> None:
    calls: list[str] = []
    done: asyncio.Queue[str] = asyncio.Queue()

    async def flaky(delivery: Delivery[RunRequested]) -> None:
        calls.append(delivery.message.run_id)
        if len(calls) <= 2:
            raise ConnectionError("database hiccup")
        await done.put(delivery.message.run_id)

    h = Harness(topics, f"{topics.topic_prefix}flaky", handler=flaky)
    await h.broker.start()
    try:
        sent = request()
        await h.publisher.publish(RUNS_REQUESTED, sent)
        assert await asyncio.wait_for(done.get(), 30) == sent.run_id
    finally:
        await h.broker.stop()
    assert calls == [sent.run_id] * 3


async def test_permanent_failure_goes_to_dead_letter_with_reason(topics: KafkaSettings) -> None:
    async def refuse(delivery: Delivery[RunRequested]) -> None:
        raise PermanentError(f"unknown agent {delivery.message.agent_id!r}")

    h = Harness(topics, f"{topics.topic_prefix}perm", handler=refuse)
    await h.broker.start()
    try:
        await h.publisher.publish(RUNS_REQUESTED, request())
        [dead] = await collect(topics.bootstrap_servers,
                               RUNS_REQUESTED.physical(topics.topic_prefix) + ".dlq", 1)
    finally:
        await h.broker.stop()
    assert header(dead, "dlq_reason") == "unknown agent 'assistant'"
    assert header(dead, "dlq_error_kind") == "permanent"


async def test_redelivery_after_crash_between_effect_and_commit_is_not_processed_twice(
        topics: KafkaSettings, mongo_db: Any) -> None:
    group = f"{topics.topic_prefix}crash"
    effects: list[str] = []

    async def effect(delivery: Delivery[RunRequested]) -> None:
        effects.append(delivery.message.run_id)

    h = Harness(topics, group)  # used only to publish
    await h.broker.connect()
    sent = request()
    await h.publisher.publish(RUNS_REQUESTED, sent)
    pipeline = ConsumerPipeline(spec=RUNS_REQUESTED, group=group, handler=effect,
                                publisher=h.publisher, ledger=ProcessedLedger(mongo_db, group))
    topic = RUNS_REQUESTED.physical(topics.topic_prefix)

    async def deliver_once() -> Outcome:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=topics.bootstrap_servers, group_id=group,
                                    enable_auto_commit=False, auto_offset_reset="earliest")
        await consumer.start()
        try:
            record = await asyncio.wait_for(consumer.getone(), 30)
            return await pipeline.process(record)
        finally:
            await consumer.stop()  # "crash": the offset is never committed

    assert await deliver_once() == Outcome.HANDLED
    assert await deliver_once() == Outcome.DUPLICATE  # Kafka redelivered; the ledger caught it
    await h.broker.stop()
    assert effects == [sent.run_id]


async def test_shutdown_during_slow_handler_does_not_commit_it(topics: KafkaSettings) -> None:
    group = f"{topics.topic_prefix}slow"
    started = asyncio.Event()

    async def slow(_delivery: Delivery[RunRequested]) -> None:
        started.set()
        await asyncio.Event().wait()  # never finishes on its own

    h = Harness(topics, group, handler=slow, graceful_timeout_s=0.5)
    await h.broker.start()
    sent = request()
    await h.publisher.publish(RUNS_REQUESTED, sent)
    await asyncio.wait_for(started.wait(), 30)
    await h.broker.stop()

    admin = AIOKafkaAdminClient(bootstrap_servers=topics.bootstrap_servers)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    committed = {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}
    assert committed == {} or all(offset == 0 for offset in committed.values())

    # A new member of the group gets the unfinished message again.
    again = Harness(topics, group)
    await again.broker.start()
    try:
        assert await asyncio.wait_for(again.handled.get(), 30) == sent
    finally:
        await again.broker.stop()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children,
                                                                      max_size=4),
    max_leaves=10,
)
bad_bodies = st.one_of(
    st.binary(max_size=200),  # not JSON at all, mostly
    json_values.map(lambda v: json.dumps(v).encode()),  # JSON of the wrong shape
    st.builds(lambda n: json.dumps({**_valid_dict(), "input": "x" * n}).encode(),
              st.integers(min_value=40_000, max_value=200_000)),  # huge string
    st.sampled_from(["run_id", "agent_id", "session_id", "user_id", "input"]).map(
        lambda f: json.dumps({k: v for k, v in _valid_dict().items() if k != f}).encode()),
    st.builds(lambda v: json.dumps({**_valid_dict(), "user_id": v}).encode(),
              st.integers() | st.lists(st.integers(), max_size=2)),  # wrong types
)


def _valid_dict() -> dict[str, Any]:
    return json.loads(encode(request()))


@settings(max_examples=2, deadline=None, suppress_health_check=list(HealthCheck))
@given(bodies=st.lists(bad_bodies, min_size=12, max_size=12),
       versions=st.lists(st.sampled_from([1, 2, 99]), min_size=12, max_size=12))
async def test_generated_bad_payloads_all_end_in_dead_letter(
        topics: KafkaSettings, bodies: list[bytes], versions: list[int]) -> None:
    h = Harness(topics, f"{topics.topic_prefix}{uuid.uuid4().hex[:6]}")
    await h.broker.start()
    topic = RUNS_REQUESTED.physical(topics.topic_prefix)
    dlq = topic + ".dlq"
    before = await _end_offset(topics.bootstrap_servers, dlq)
    try:
        for body, version in zip(bodies, versions, strict=True):
            headers = Envelope.new(request(), source="mindstream/test").to_headers()
            headers = [(k, str(version).encode() if k == "schema_version" else v) for k, v in headers]
            await send_raw(h, topic, body, headers)
        good = request("still alive")
        await h.publisher.publish(RUNS_REQUESTED, good)
        while (got := await asyncio.wait_for(h.handled.get(), 30)) != good:
            pass  # handled messages from earlier examples on the same topic
        assert got == good
        dead = await collect(topics.bootstrap_servers, dlq, before + len(bodies))
    finally:
        await h.broker.stop()
    assert all(header(r, "dlq_reason") for r in dead)


async def _end_offset(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        if not parts:
            await consumer._client.force_metadata_update()
            parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        ends = await consumer.end_offsets(parts)
        return sum(ends.values())
    finally:
        await consumer.stop()
