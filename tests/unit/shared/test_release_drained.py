"""A drained partition is handed back to the fetcher before its last record is handled,
so the next message on it is not held up behind a long poll of the other partitions."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError

from shared.kafka.consumer import release_drained_partition

pytestmark = pytest.mark.unit

TP = TopicPartition("p.mindstream.runs.ready.v1", 5)


@dataclass
class FakeConsumer:
    """The part of aiokafka that matters: a partition with a fetched batch still held is
    left out of new fetches; ``seek`` drops the held batch without moving the position."""

    highwaters: dict[TopicPartition, int | None]
    held: set[TopicPartition] = field(default_factory=set)
    seeks: list[tuple[TopicPartition, int]] = field(default_factory=list)
    revoked: bool = False

    def highwater(self, partition: TopicPartition) -> int | None:
        if self.revoked:
            raise AssertionError("Partition is not assigned")
        return self.highwaters[partition]

    def seek(self, partition: TopicPartition, offset: int) -> None:
        if self.revoked:
            raise IllegalStateError("not assigned")
        self.seeks.append((partition, offset))
        self.held.discard(partition)

    def fetchable(self) -> set[TopicPartition]:
        return set(self.highwaters) - self.held


def record(offset: int, tp: TopicPartition = TP) -> Any:
    return SimpleNamespace(topic=tp.topic, partition=tp.partition, offset=offset)


def test_newest_record_releases_its_partition_at_the_position_already_reached() -> None:
    consumer = FakeConsumer({TP: 8}, held={TP})

    assert release_drained_partition(consumer, record(7))

    assert consumer.seeks == [(TP, 8)]  # the next offset: nothing skipped, nothing re-read
    assert TP in consumer.fetchable()


def test_a_backlog_already_fetched_is_left_alone() -> None:
    consumer = FakeConsumer({TP: 12}, held={TP})

    assert not release_drained_partition(consumer, record(7))

    assert consumer.seeks == []
    assert TP not in consumer.fetchable()


@pytest.mark.parametrize("consumer", [
    FakeConsumer({TP: None}),  # nothing fetched yet: nothing to release
    FakeConsumer({TP: 8}, revoked=True),  # a rebalance took the partition meanwhile
    SimpleNamespace(commit=lambda: None),  # FastStream's fake consumer (no group)
])
def test_nothing_to_release_is_not_an_error(consumer: Any) -> None:
    assert not release_drained_partition(consumer, record(7))


async def test_the_real_consumer_qualifies() -> None:
    """Duck typing, checked against aiokafka itself (an API rename would make it a no-op)."""
    from aiokafka import AIOKafkaConsumer

    from shared.kafka.consumer import _Seekable

    consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1")  # never started
    assert isinstance(consumer, _Seekable)
