"""The agents every replica knows, kept from the compacted ``mindstream.agents.v1`` topic.

Reasoning and tools both need agent definitions (reasoning to run them,
tools to re-check allowlists: defense in depth). Each replica reads the
compacted topic in full, without a consumer group, at start (so it knows
every agent before it takes its first message) and then follows it, so a new
version takes effect for new runs without a restart.

Versions: the registry keeps every version it has seen, so a run pinned to
``agent@3`` keeps working while ``agent@4`` is rolled out. A compacted topic
holds only the newest version per agent, so a replica started later knows
older versions only if the owning service persisted them (reasoning does).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.agents import AgentDefinition, split_agent_ref
from schemas.codec import decode
from schemas.envelope import Envelope
from schemas.errors import ContractError
from schemas.topics import AGENTS
from shared.kafka.consumer import Delivery
from shared.settings import KafkaSettings

__all__ = ["AgentRegistry"]

log = logging.getLogger("mindstream.agents")


class AgentRegistry:
    def __init__(self) -> None:
        self._versions: dict[str, dict[int, AgentDefinition]] = {}
        self._listeners: list[Callable[[AgentDefinition], None]] = []

    def apply(self, definition: AgentDefinition) -> bool:
        """Record a definition; True if it was new (replays are no-ops)."""
        versions = self._versions.setdefault(definition.id, {})
        if versions.get(definition.version) == definition:
            return False
        versions[definition.version] = definition
        for listener in self._listeners:
            listener(definition)
        return True

    def on_change(self, listener: Callable[[AgentDefinition], None]) -> None:
        self._listeners.append(listener)

    def get(self, ref: str) -> AgentDefinition | None:
        """``"id"`` gives the newest version; ``"id@N"`` exactly version N."""
        agent_id, version = split_agent_ref(ref)
        versions = self._versions.get(agent_id)
        if not versions:
            return None
        if version is None:
            return versions[max(versions)]
        return versions.get(version)

    def all(self) -> list[AgentDefinition]:
        return [v[max(v)] for v in self._versions.values()]

    async def handle(self, delivery: Delivery[AgentDefinition]) -> None:
        """Consumer-pipeline handler for the agents topic."""
        if self.apply(delivery.message):
            log.info("agent %s@%d registered", delivery.message.id, delivery.message.version)

    async def load(self, kafka: KafkaSettings, *, timeout_s: float = 30.0) -> int:
        """Read the agents topic from the start to its current end; returns how many were read."""
        topic = AGENTS.physical(kafka.topic_prefix)
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, group_id=None,
                                    enable_auto_commit=False)
        await consumer.start()
        count = 0
        try:
            partitions = consumer.partitions_for_topic(topic)
            if partitions is None:
                await consumer._client.force_metadata_update()
                partitions = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in partitions]
            if not tps:
                return 0
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            async with asyncio.timeout(timeout_s):
                while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                    batch = await consumer.getmany(timeout_ms=500)
                    for records in batch.values():
                        for record in records:
                            count += self._apply_record(record.headers or (), record.value)
        finally:
            await consumer.stop()
        return count

    def _apply_record(self, headers: object, value: bytes | None) -> int:
        try:
            envelope = Envelope.from_headers(headers)  # type: ignore[arg-type]
            self.apply(decode(AgentDefinition, value or b"", envelope))
            return 1
        except ContractError as exc:
            log.warning("skipping invalid agent definition at load: %s", exc)
            return 0
