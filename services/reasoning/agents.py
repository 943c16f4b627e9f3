"""The agents this replica knows: the compacted topic, plus every version ever seen.

The registry (:class:`shared.agent_registry.AgentRegistry`) follows the agents topic,
so a new version takes effect for new runs without a restart. The topic keeps only
the newest version per agent, so each version seen is also written to
``agent_versions``; at start those are loaded first, and a run pinned to ``agent@3``
(or a run that started on version 3 and is still waiting) keeps its definition
across restarts.
"""

from __future__ import annotations

import logging

from schemas.agents import AgentDefinition
from services.reasoning.store import AgentVersionStore
from shared.agent_registry import AgentRegistry
from shared.kafka.consumer import Delivery
from shared.settings import KafkaSettings

__all__ = ["AgentBook"]

log = logging.getLogger("mindstream.reasoning.agents")


class AgentBook:
    def __init__(self, registry: AgentRegistry, versions: AgentVersionStore) -> None:
        self.registry = registry
        self._versions = versions
        self._unsaved: list[AgentDefinition] = []
        registry.on_change(self._unsaved.append)

    async def start(self, kafka: KafkaSettings) -> None:
        for definition in await self._versions.all():
            self.registry.apply(definition)
        self._unsaved.clear()  # just read from the store
        count = await self.registry.load(kafka)
        await self._persist()
        log.info("agents loaded: %d record(s) from the topic, %d agent(s) known",
                 count, len(self.registry.all()))

    async def handle(self, delivery: Delivery[AgentDefinition]) -> None:
        await self.registry.handle(delivery)
        await self._persist()

    async def _persist(self) -> None:
        while self._unsaved:
            await self._versions.save(self._unsaved[0])
            self._unsaved.pop(0)
