"""Read back what the system published, to time each stage and to count completions.

The bench does not instrument the services: every message already carries its
production time (``ce_time``) and run id (``correlation_id``) in its envelope,
so reading the topics afterwards gives each run's timeline for free.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.envelope import HEADER_TIME

__all__ = ["Captured", "drain", "read_topics"]


@dataclass(frozen=True)
class Captured:
    """One record, reduced to what timing and counting need."""

    topic: str
    key: str
    ce_id: str
    ce_type: str
    correlation_id: str
    ce_time: str
    value: bytes


def _headers(raw: Iterable[tuple[str, bytes]] | None) -> dict[str, str]:
    return {k: v.decode("utf-8", "replace") for k, v in raw or ()}


async def _partitions(consumer: AIOKafkaConsumer, topics: Sequence[str],
                      attempts: int = 20) -> list[TopicPartition]:
    """Every partition of ``topics``; metadata is asked for these topics only (a busy
    broker's full metadata is large) and again until each topic is known."""
    client = consumer._client
    await client.set_topics(list(topics))
    for _ in range(attempts):
        known = {name: consumer.partitions_for_topic(name) for name in topics}
        if all(known.values()):
            return [TopicPartition(n, p) for n, parts in known.items() for p in sorted(parts or ())]
        await client.force_metadata_update()
        await asyncio.sleep(0.1)
    missing = [n for n in topics if not consumer.partitions_for_topic(n)]
    raise RuntimeError(f"no metadata for topics {missing} (do they exist?)")


async def read_topics(bootstrap: str, topics: Sequence[str], *, timeout_s: float = 60.0,
                      keep_value: bool = True) -> list[Captured]:
    """Every record of ``topics`` from the beginning up to their end offsets at call time."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest",
                                max_partition_fetch_bytes=4 * 1024 * 1024)
    await consumer.start()
    try:
        partitions = await _partitions(consumer, topics)
        if not partitions:
            return []
        consumer.assign(partitions)
        return await drain(consumer, partitions, timeout_s=timeout_s, keep_value=keep_value)
    finally:
        await consumer.stop()


async def drain(consumer: AIOKafkaConsumer, partitions: Sequence[TopicPartition], *,
                timeout_s: float, keep_value: bool = True) -> list[Captured]:
    """The records of the assigned ``partitions`` between their beginning and end offsets now.

    The start is set with an explicit ``seek`` to each partition's beginning offset, not
    with ``seek_to_beginning``: that only queues an offset reset, and the reset aiokafka
    starts by itself on ``assign`` (to the latest offset, with no group) can land after
    it and move the position to the end -- the read then returned nothing, now and then.
    """
    begins = await consumer.beginning_offsets(partitions)
    ends = await consumer.end_offsets(partitions)
    pending = set()
    for tp in partitions:
        if ends[tp] > begins[tp]:
            consumer.seek(tp, begins[tp])
            pending.add(tp)
    out: list[Captured] = []
    async with asyncio.timeout(timeout_s):
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=500, max_records=5000)
            for tp, records in batch.items():
                for record in records:
                    if record.offset >= ends[tp]:
                        continue
                    h = _headers(record.headers)
                    out.append(Captured(
                        topic=record.topic, key=(record.key or b"").decode("utf-8", "replace"),
                        ce_id=h.get("ce_id", ""), ce_type=h.get("ce_type", ""),
                        correlation_id=h.get("correlation_id", ""), ce_time=h.get(HEADER_TIME, ""),
                        value=record.value if keep_value else b"",
                    ))
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
    return out
