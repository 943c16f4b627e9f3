"""The workflow definitions this process knows, from the compacted ``mindstream.workflows.v1``.

Read in full at start (no consumer group, like agents), then followed; every
version seen is also persisted, because the compacted topic keeps only the
newest version of each workflow and a request may pin an older one.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.agents import split_agent_ref
from schemas.codec import decode
from schemas.envelope import Envelope
from schemas.errors import ContractError
from schemas.topics import WORKFLOWS
from schemas.workflows import WorkflowDefinition
from services.workflows.store import WorkflowVersionStore
from shared.kafka.consumer import Delivery
from shared.settings import KafkaSettings

__all__ = ["WorkflowBook", "read_definitions"]

log = logging.getLogger("mindstream.workflows")


class WorkflowBook:
    def __init__(self, versions: WorkflowVersionStore | None = None) -> None:
        self._versions: dict[str, dict[int, WorkflowDefinition]] = {}
        self._store = versions

    def apply(self, definition: WorkflowDefinition) -> bool:
        known = self._versions.setdefault(definition.id, {})
        if known.get(definition.version) == definition:
            return False
        known[definition.version] = definition
        return True

    def get(self, ref: str) -> WorkflowDefinition | None:
        """``"id"`` gives the newest version; ``"id@N"`` exactly version N."""
        workflow_id, version = split_agent_ref(ref)
        known = self._versions.get(workflow_id)
        if not known:
            return None
        return known[max(known)] if version is None else known.get(version)

    def all(self) -> list[WorkflowDefinition]:
        return [v[max(v)] for v in self._versions.values()]

    async def start(self, kafka: KafkaSettings) -> None:
        if self._store is not None:
            for definition in await self._store.all():
                self.apply(definition)
        for definition in await read_definitions(kafka):
            await self._remember(definition)

    async def handle(self, delivery: Delivery[WorkflowDefinition]) -> None:
        await self._remember(delivery.message)

    async def _remember(self, definition: WorkflowDefinition) -> None:
        if self.apply(definition):
            log.info("workflow %s registered", definition.ref())
            if self._store is not None:
                await self._store.save(definition)


async def read_definitions(kafka: KafkaSettings, *, timeout_s: float = 30.0
                           ) -> list[WorkflowDefinition]:
    """Every definition on the topic, from its start to its current end."""
    topic = WORKFLOWS.physical(kafka.topic_prefix)
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, group_id=None,
                                enable_auto_commit=False)
    await consumer.start()
    found: list[WorkflowDefinition] = []
    try:
        partitions = consumer.partitions_for_topic(topic)
        if partitions is None:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in partitions]
        if not tps:
            return found
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        async with asyncio.timeout(timeout_s):
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for record in records:
                        try:
                            envelope = Envelope.from_headers(record.headers or ())
                            found.append(decode(WorkflowDefinition, record.value or b"", envelope))
                        except ContractError as exc:
                            log.warning("skipping invalid workflow definition: %s", exc)
    finally:
        await consumer.stop()
    return found
