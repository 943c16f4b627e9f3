"""Reading whole topics, end offsets and consumer-group lag for the checker."""

from __future__ import annotations

import asyncio
import importlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

__all__ = ["Rec", "consumer_groups", "end_offsets", "group_lag", "read_topic", "topic_partitions"]

Offsets = dict[TopicPartition, int]


@dataclass(frozen=True)
class Rec:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    headers: dict[str, str]
    value: bytes

    @property
    def id(self) -> str | None:
        return self.headers.get("ce_id")

    def body(self) -> dict[str, Any]:
        try:
            data = json.loads(self.value)
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}


async def topic_partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    parts = consumer.partitions_for_topic(topic)
    if parts is None:
        await consumer._client.force_metadata_update()
        parts = consumer.partitions_for_topic(topic) or set()
    return [TopicPartition(topic, p) for p in sorted(parts)]


async def end_offsets(bootstrap: str, topics: Iterable[str]) -> Offsets:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [tp for t in topics for tp in await topic_partitions(consumer, t)]
        return dict(await consumer.end_offsets(tps)) if tps else {}
    finally:
        await consumer.stop()


async def read_topic(bootstrap: str, topic: str, since: Mapping[TopicPartition, int] | None = None,
                     timeout_s: float = 120.0) -> list[Rec]:
    """Every record of ``topic`` (from ``since``, else the start) up to its end right now."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, max_partition_fetch_bytes=4 << 20)
    await consumer.start()
    out: list[Rec] = []
    try:
        tps = await topic_partitions(consumer, topic)
        if not tps:
            return out
        ends = await consumer.end_offsets(tps)
        consumer.assign(tps)
        for tp in tps:
            start = (since or {}).get(tp, 0)
            if start >= ends[tp]:
                consumer.pause(tp)
            else:
                consumer.seek(tp, start)
        pending = {tp for tp in tps if (since or {}).get(tp, 0) < ends[tp]}
        async with asyncio.timeout(timeout_s):
            while pending:
                batch = await consumer.getmany(timeout_ms=500, max_records=5000)
                for tp, records in batch.items():
                    for r in records:
                        if r.offset < ends[tp]:
                            out.append(Rec(r.topic, r.partition, r.offset, r.key, {
                                k: bytes(v).decode("utf-8", "replace") for k, v in r.headers or ()
                            }, r.value or b""))
                for tp in list(pending):
                    if await consumer.position(tp) >= ends[tp]:
                        pending.discard(tp)
                        consumer.pause(tp)
    finally:
        await consumer.stop()
    return out


@cache
def consumer_groups(prefix: str = "") -> dict[str, tuple[str, ...]]:
    """Logical topic -> the consumer groups the core services use on it under ``prefix``.

    Taken from the services themselves: each is built (no I/O) and asked what it
    subscribed, as the deploy checks do, so this never drifts from the code.
    """
    from mindstream.dev.services import SERVICES
    from shared.settings import KafkaSettings, MongoSettings

    settings_of = {
        "memory": ("services.memory.settings", "MemoryServiceSettings"),
        "reasoning": ("services.reasoning.settings", "ReasoningSettings"),
        "tools": ("services.tools.settings", "ToolsSettings"),
        "telemetry": ("services.telemetry.settings", "TelemetrySettings"),
        "control-plane": ("services.control_plane.settings", "ControlPlaneSettings"),
        "workflows": ("services.workflows.settings", "WorkflowsSettings"),
    }
    groups: dict[str, set[str]] = {}
    for name in SERVICES:
        if name not in settings_of:
            continue
        module, cls = settings_of[name]
        settings = getattr(importlib.import_module(module), cls)()
        app = importlib.import_module(f"services.{name.replace('-', '_')}.app")
        runtime = app.build(settings, KafkaSettings(MINDSTREAM_TOPIC_PREFIX=prefix),
                            MongoSettings())
        for topic, group in runtime.subscriptions:
            groups.setdefault(topic, set()).add(group or f"(no group) {name}")
    return {t: tuple(sorted(g)) for t, g in groups.items()}


async def group_lag(bootstrap: str, prefix: str, extra: Mapping[str, Iterable[str]] | None = None,
                    ) -> dict[str, int]:
    """Uncommitted records per (group on topic), for every grouped consumer of the stack."""
    wanted: dict[str, set[str]] = {}
    for topic, groups in consumer_groups(prefix).items():
        for group in groups:
            if not group.startswith("(no group)"):
                wanted.setdefault(group, set()).add(prefix + topic)
    for topic, extra_groups in (extra or {}).items():
        for group in extra_groups:
            wanted.setdefault(group, set()).add(prefix + topic)
    ends = await end_offsets(bootstrap, {t for ts in wanted.values() for t in ts})
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    lag: dict[str, int] = {}
    try:
        for group, topics in wanted.items():
            tps = [tp for tp in ends if tp.topic in topics]
            committed = await admin.list_consumer_group_offsets(group, partitions=tps)
            for tp in tps:
                meta = committed.get(tp)
                done = meta.offset if meta is not None and meta.offset >= 0 else 0
                behind = ends[tp] - done
                if behind > 0:
                    key = f"{group} on {tp.topic.removeprefix(prefix)}"
                    lag[key] = lag.get(key, 0) + behind
    finally:
        await admin.close()
    return lag
