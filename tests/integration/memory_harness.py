"""Test harness for the memory service on real Kafka and a MongoDB-wire server, in process.

Messages are published as reasoning would publish them (RunCompleted, RunRequested,
KnowledgeQuery); the service's answers are read from their topics. The
``make_harness`` fixture is registered for every integration test in ``conftest.py``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from schemas.agents import AgentDefinition, MemorySettings, ModelSettings
from schemas.base import Message
from schemas.codec import decode
from schemas.common import ChatMessage, ChatRole, ToolCallRequest
from schemas.envelope import Envelope
from schemas.runs import RunCompleted, RunReady, RunRequested, RunStatus
from schemas.topics import AGENTS, AUDIT, RUNS_READY, RUNS_REQUESTED, TOOLS_RESULTS, TopicSpec
from services.memory.app import MemoryApp, wire
from services.memory.settings import MemoryServiceSettings
from shared.kafka.broker import make_broker
from shared.kafka.publisher import Publisher
from shared.settings import KafkaSettings, MongoSettings

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def rid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def completed(
    session: str, user: str, text: str, answer: str = "Noted.", *, run_id: str | None = None,
    agent: str = "assistant", at: datetime = T0, tool: bool = False,
) -> RunCompleted:
    messages = [ChatMessage(role=ChatRole.USER, content=text)]
    if tool:
        call = f"call-{uuid.uuid4().hex[:6]}"
        messages += [
            ChatMessage(role=ChatRole.ASSISTANT,
                        tool_calls=[ToolCallRequest(id=call, name="lookup", arguments={"q": text})]),
            ChatMessage(role=ChatRole.TOOL, tool_call_id=call, content="result"),
        ]
    messages.append(ChatMessage(role=ChatRole.ASSISTANT, content=answer))
    return RunCompleted(
        run_id=run_id or rid("run"), session_id=session, agent_id=agent, user_id=user,
        status=RunStatus.COMPLETED, output=answer, messages=messages, completed_at=at,
    )


def requested(session: str, user: str, text: str, *, agent: str = "assistant") -> RunRequested:
    return RunRequested(run_id=rid("run"), agent_id=agent, session_id=session, user_id=user,
                        input=text)


def agent_def(agent_id: str, *, budget: int = 4000, history: int = 20,
              knowledge: bool = False) -> AgentDefinition:
    return AgentDefinition(
        id=agent_id, version=1, instructions="Help the user.",
        model=ModelSettings(name="scripted"), knowledge=knowledge,
        memory=MemorySettings(history_messages=history, token_budget=budget),
    )


class Reader:
    """Follows one topic from its start and hands out decoded messages that match."""

    def __init__(self, kafka: KafkaSettings, spec: TopicSpec) -> None:
        self.spec = spec
        self._consumer = AIOKafkaConsumer(
            spec.physical(kafka.topic_prefix), bootstrap_servers=kafka.bootstrap_servers,
            group_id=None, auto_offset_reset="earliest", enable_auto_commit=False)
        self.seen: list[tuple[Envelope, Message]] = []

    async def start(self) -> None:
        await self._consumer.start()

    async def stop(self) -> None:
        await self._consumer.stop()

    async def wait_for(self, match: Callable[[Any], bool], *, count: int = 1,
                       timeout_s: float = 30.0) -> list[Any]:
        def found() -> list[Any]:
            return [m for _, m in self.seen if match(m)]

        async with asyncio.timeout(timeout_s):
            while len(found()) < count:
                batch = await self._consumer.getmany(timeout_ms=100)
                for records in batch.values():
                    for record in records:
                        envelope = Envelope.from_headers(record.headers or ())
                        self.seen.append((envelope, decode(self.spec.message, record.value,
                                                           envelope)))
        return found()


class Harness:
    def __init__(self, app: MemoryApp, kafka: KafkaSettings) -> None:
        self.app = app
        self.kafka = kafka
        self.broker = make_broker(kafka, "memory-test")
        self.publisher = Publisher(self.broker, source="mindstream/test",
                                   topic_prefix=kafka.topic_prefix)
        self.ready = Reader(kafka, RUNS_READY)
        self.results = Reader(kafka, TOOLS_RESULTS)
        self.audit = Reader(kafka, AUDIT)

    async def publish(self, spec: TopicSpec, message: Message) -> Envelope:
        return await self.publisher.publish(spec, message)

    async def ready_for(self, request: RunRequested) -> RunReady:
        await self.publish(RUNS_REQUESTED, request)
        [ready] = await self.ready.wait_for(lambda m: m.run_id == request.run_id)
        return ready  # type: ignore[no-any-return]


@pytest.fixture
async def make_harness(
    topics: KafkaSettings, mongo_settings: MongoSettings, mongo_db: object,
) -> AsyncIterator[Callable[..., Awaitable[Harness]]]:
    started: list[Harness] = []
    broker = make_broker(topics, "memory-test-pre")
    await broker.start()
    pre = Publisher(broker, source="mindstream/test", topic_prefix=topics.topic_prefix)

    async def make(settings: MemoryServiceSettings | None = None,
                   agents: tuple[AgentDefinition, ...] = ()) -> Harness:
        for definition in agents:  # known before the service takes its first message
            await pre.publish(AGENTS, definition)
        app = wire(settings or MemoryServiceSettings(consumer_concurrency=1), topics,
                   mongo_settings, http_port=0)
        harness = Harness(app, topics)
        await harness.broker.start()
        for reader in (harness.ready, harness.results, harness.audit):
            await reader.start()
        await app.runtime.start()
        started.append(harness)
        return harness

    yield make
    for harness in started:
        await harness.app.runtime.stop()
        for reader in (harness.ready, harness.results, harness.audit):
            await reader.stop()
        await harness.broker.stop()
    await broker.stop()


