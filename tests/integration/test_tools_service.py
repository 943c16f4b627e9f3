"""The tools service on real Kafka and a real MongoDB-wire server, built by ``build_app``.

Calls go in on ``tools.calls``; we wait for answers on ``tools.results``
(records are awaited, never slept for). A sentinel call on the same session,
which lands on the same partition, proves that everything before it has been
handled.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.agents import AgentDefinition, ModelSettings
from schemas.audit import AuditEvent
from schemas.codec import decode
from schemas.envelope import Envelope
from schemas.tools import ToolCall, ToolErrorCode, ToolResult
from schemas.topics import AGENTS, AUDIT, TOOLS_CALLS, TOOLS_RESULTS
from services.tools.app import ToolsApp, build_app
from services.tools.handlers import result_message_id
from services.tools.registry import ToolRegistry, spec_of
from services.tools.settings import ToolsSettings
from shared.audit import digest
from shared.kafka.broker import make_broker
from shared.kafka.publisher import Publisher
from shared.settings import KafkaSettings, MongoSettings
from tests.support.kafka import collect
from tests.unit.tools import tools_sandbox_fixtures as sandboxed
from tests.unit.tools.tools_mcp_fixture import stdio_config

pytestmark = pytest.mark.integration

AGENT = "helper"


class Effects:
    """Tools whose real executions are counted here, in the test process."""

    def __init__(self) -> None:
        self.count: Counter[str] = Counter()
        self.registry = ToolRegistry([spec_of(sandboxed.hard_exit), spec_of(sandboxed.double)])
        reg = self.registry

        @reg.tool(side_effecting=True)
        def charge(amount: int) -> dict[str, int]:
            """Charge an amount (a side effect that must happen once)."""
            self.count["charge"] += 1
            return {"charged": amount}

        @reg.tool(timeout_s=0.5)
        async def stall() -> str:
            """Hangs past its timeout."""
            await asyncio.Event().wait()
            return "never"

        for i in range(10):
            reg.tool(name=f"burst_{i}", description=f"Burst tool {i}.")(self._burst(f"burst_{i}"))

    def _burst(self, name: str) -> Any:
        async def burst(n: int) -> int:
            self.count[name] += 1
            return n

        return burst


def call(tool: str, arguments: dict[str, Any] | None = None, *, call_id: str | None = None,
         session: str = "s-1", deadline_s: float = 30.0) -> ToolCall:  # fmt: skip
    return ToolCall(call_id=call_id or f"c-{uuid.uuid4().hex[:12]}", run_id="run-1",
                    session_id=session, agent_id=AGENT, tool=tool, arguments=arguments or {},
                    deadline=datetime.now(UTC) + timedelta(seconds=deadline_s))  # fmt: skip


@asynccontextmanager
async def producer(kafka: KafkaSettings) -> AsyncIterator[Publisher]:
    broker = make_broker(kafka, client_id="test-reasoning")
    await broker.start()
    try:
        yield Publisher(broker, source="mindstream/reasoning", topic_prefix=kafka.topic_prefix)
    finally:
        await broker.stop()


@asynccontextmanager
async def running(
    kafka: KafkaSettings, mongo: MongoSettings, tools: Iterable[str],
    registry: ToolRegistry | None = None, **settings: Any,
) -> AsyncIterator[ToolsApp]:  # fmt: skip
    """The service, after its agent definition was published to the compacted topic."""
    async with producer(kafka) as pub:
        await pub.publish(AGENTS, AgentDefinition(id=AGENT, version=1, instructions="help",
                                                  model=ModelSettings(name="m"), tools=list(tools)))
    app = build_app(ToolsSettings(http_port=0, **settings), kafka, mongo, registry=registry)
    async with app.runtime:
        assert app.agents.get(AGENT) is not None  # loaded before the first call
        yield app


async def results(kafka: KafkaSettings, n: int, timeout_s: float = 30.0) -> list[tuple[Envelope, ToolResult]]:
    records = await collect(kafka.bootstrap_servers, TOOLS_RESULTS.physical(kafka.topic_prefix), n,
                            timeout_s=timeout_s)  # fmt: skip
    out = []
    for r in records:
        envelope = Envelope.from_headers(r.headers)
        out.append((envelope, decode(ToolResult, r.value, envelope)))
    return out


async def until_answered(kafka: KafkaSettings, call_id: str, timeout_s: float = 30.0,
                         ) -> list[tuple[Envelope, ToolResult]]:  # fmt: skip
    """Every result so far, once the one answering ``call_id`` is among them."""
    topic = TOOLS_RESULTS.physical(kafka.topic_prefix)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka.bootstrap_servers, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)  # fmt: skip
    await consumer.start()
    seen: list[tuple[Envelope, ToolResult]] = []
    try:
        async with asyncio.timeout(timeout_s):
            while not any(r.call_id == call_id for _, r in seen):
                for part in (await consumer.getmany(timeout_ms=200)).values():
                    for rec in part:
                        envelope = Envelope.from_headers(rec.headers)
                        seen.append((envelope, decode(ToolResult, rec.value, envelope)))
    finally:
        await consumer.stop()
    return seen


async def test_a_call_delivered_many_times_runs_once(topics: KafkaSettings,
                                                     mongo_settings: MongoSettings) -> None:  # fmt: skip
    effects = Effects()
    async with running(topics, mongo_settings, ["charge"], effects.registry):
        the_call = call("charge", {"amount": 5}, call_id="pay-1")
        async with producer(topics) as pub:
            for _ in range(3):  # the same message, three times
                await pub.publish(TOOLS_CALLS, the_call, message_id="msg-same")
            for i in range(3):  # the same call in three different messages
                await pub.publish(TOOLS_CALLS, the_call, message_id=f"msg-{i}")
            await pub.publish(TOOLS_CALLS, call("charge", {"amount": 1}, call_id="sentinel"))
        seen = await until_answered(topics, "sentinel")
    assert effects.count["charge"] == 2  # pay-1 once, the sentinel once
    answers = [(e, r) for e, r in seen if r.call_id == "pay-1"]
    assert len(answers) >= 4  # at least one answer per distinct message id
    assert {e.id for e, _ in answers} == {result_message_id("pay-1")}
    assert {r.model_dump_json() for _, r in answers} == {answers[0][1].model_dump_json()}
    assert answers[0][1].content == {"charged": 5}


async def test_a_hanging_tool_times_out_within_its_deadline(
    topics: KafkaSettings, mongo_settings: MongoSettings
) -> None:
    effects = Effects()
    async with running(topics, mongo_settings, ["stall"], effects.registry), producer(topics) as pub:
        sent = time.monotonic()
        await pub.publish(TOOLS_CALLS, call("stall", call_id="hang", deadline_s=2.0))
        [(_, result)] = await results(topics, 1, timeout_s=10)
        waited = time.monotonic() - sent
    assert result.error is not None
    assert result.error.code is ToolErrorCode.TIMEOUT
    assert 400 <= result.duration_ms < 1500
    assert waited < 2.0


async def test_a_tool_outside_the_allowlist_is_refused_whatever_the_message_asks(
    topics: KafkaSettings, mongo_settings: MongoSettings
) -> None:
    effects = Effects()
    async with running(topics, mongo_settings, ["stall"], effects.registry), producer(topics) as pub:
        await pub.publish(TOOLS_CALLS, call("charge", {"amount": 9}, call_id="sneaky"))
        [(_, result)] = await results(topics, 1)
        audits = await collect(topics.bootstrap_servers, AUDIT.physical(topics.topic_prefix), 1)
    assert effects.count["charge"] == 0
    assert result.error is not None
    assert result.error.code is ToolErrorCode.NOT_ALLOWED
    event = decode(AuditEvent, audits[0].value, Envelope.from_headers(audits[0].headers))
    assert (event.action, event.outcome, event.target.id) == ("tool.refused", "refused", "sneaky")
    assert event.details["args_sha256"] == digest({"amount": 9})  # a digest, not the arguments
    assert "amount" not in event.model_dump_json()


async def test_an_mcp_tool_end_to_end_through_kafka(topics: KafkaSettings,
                                                    mongo_settings: MongoSettings) -> None:  # fmt: skip
    async with running(topics, mongo_settings, ["fixture__add"], ToolRegistry(),
                       mcp_servers=[stdio_config(tools=["add"])]) as app:
        assert app.registry.names() == ["fixture__add"]
        async with producer(topics) as pub:
            await pub.publish(TOOLS_CALLS, call("fixture__add", {"a": 40, "b": 2}, call_id="m-1"))
            [(_, result)] = await results(topics, 1)
    assert (result.ok, result.content, result.tool) == (True, {"result": 42}, "fixture__add")


async def test_a_crashing_sandboxed_tool_is_an_error_and_the_service_keeps_serving(
    topics: KafkaSettings, mongo_settings: MongoSettings
) -> None:
    effects = Effects()
    tools = ["hard_exit", "double"]
    async with running(topics, mongo_settings, tools, effects.registry), producer(topics) as pub:
        await pub.publish(TOOLS_CALLS, call("hard_exit", call_id="crash"))
        await pub.publish(TOOLS_CALLS, call("double", {"x": 21}, call_id="after"))
        answers = {r.call_id: r for _, r in await results(topics, 2)}
    crashed = answers["crash"]
    assert crashed.error is not None
    assert crashed.error.code is ToolErrorCode.FAILED
    assert "sandbox_crashed" in crashed.error.message
    assert answers["after"].ok
    assert answers["after"].content is not None


async def test_a_burst_of_a_thousand_calls_is_answered_exactly_once(
    topics: KafkaSettings, mongo_settings: MongoSettings
) -> None:
    effects = Effects()
    names = [f"burst_{i}" for i in range(10)]
    calls = [call(names[i % 10], {"n": i}, call_id=f"b-{i}", session=f"s-{i % 30}",
                  deadline_s=120) for i in range(1000)]  # fmt: skip
    started = time.monotonic()
    service = running(topics, mongo_settings, names, effects.registry, consumer_concurrency=3)
    async with service, producer(topics) as pub:
        for chunk in range(0, 1000, 100):
            await asyncio.gather(*(pub.publish(TOOLS_CALLS, c) for c in calls[chunk : chunk + 100]))
        answers = await results(topics, 1000, timeout_s=60)
    elapsed = time.monotonic() - started
    assert len({r.call_id for _, r in answers}) == 1000
    assert len({e.id for e, _ in answers}) == 1000
    assert all(r.ok for _, r in answers)
    assert sum(effects.count.values()) == 1000
    assert await total_records(topics, TOOLS_RESULTS.physical(topics.topic_prefix)) == 1000
    assert elapsed < 60


async def total_records(kafka: KafkaSettings, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, group_id=None)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not parts:
            await consumer._client.force_metadata_update()
            parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        ends = await consumer.end_offsets(parts)
        starts = await consumer.beginning_offsets(parts)
        return sum(ends[p] - starts[p] for p in parts)
    finally:
        await consumer.stop()
