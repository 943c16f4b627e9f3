"""Reading topics in tests: wait for records as events, never by sleeping."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord


async def collect(bootstrap: str, topic: str, count: int, *, timeout_s: float = 30.0,
                  ) -> list[ConsumerRecord[Any, Any]]:
    """Read ``count`` records from the start of ``topic`` (no consumer group)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    records: list[ConsumerRecord[Any, Any]] = []
    try:
        async with asyncio.timeout(timeout_s):
            while len(records) < count:
                batch = await consumer.getmany(timeout_ms=200)
                for part in batch.values():
                    records.extend(part)
    except TimeoutError:
        raise AssertionError(f"{topic}: got {len(records)} of {count} records in {timeout_s}s") from None
    finally:
        await consumer.stop()
    return records


def header(record: ConsumerRecord[Any, Any], name: str) -> str | None:
    for key, value in record.headers or ():
        if key == name:
            return bytes(value).decode()
    return None
