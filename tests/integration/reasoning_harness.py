"""Test harness for the reasoning service on real Kafka, FerretDB and the scripted model.

``ReasoningStack`` starts the scripted model server, publishes agent definitions,
builds the reasoning service in process (and the real tools and memory services
when asked), and follows the output topics so tests can await what they expect.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import yaml
from aiokafka import AIOKafkaConsumer

from mindstream.testing.scripted_model import ScriptedModelServer
from schemas.agents import AgentDefinition
from schemas.base import Message
from schemas.codec import decode
from schemas.common import Actor, ActorKind
from schemas.envelope import Envelope
from schemas.runs import (
    RunCommand,
    RunCommandKind,
    RunCompleted,
    RunContext,
    RunEvent,
    RunReady,
    RunRequested,
)
from schemas.tools import ToolCall, ToolResult
from schemas.topics import (
    AGENTS,
    AUDIT,
    RUNS_COMMANDS,
    RUNS_COMPLETED,
    RUNS_EVENTS,
    RUNS_READY,
    RUNS_REQUESTED,
    TOOLS_CALLS,
    TOOLS_RESULTS,
    TopicSpec,
)
from services.reasoning.app import ReasoningApp, assemble
from services.reasoning.settings import ReasoningSettings
from shared.kafka.broker import make_broker
from shared.kafka.publisher import Publisher
from shared.settings import KafkaSettings, MongoSettings
from shared.tasks import cancel_and_wait

M = TypeVar("M", bound=Message)


class Follower(Generic[M]):
    """Reads a topic from its start without a group; tests await matching messages."""

    def __init__(self, bootstrap: str, spec: TopicSpec, prefix: str) -> None:
        self.spec = spec
        self.items: list[tuple[Envelope, M]] = []
        self._changed = asyncio.Condition()
        self._consumer = AIOKafkaConsumer(
            spec.physical(prefix), bootstrap_servers=bootstrap, group_id=None,
            auto_offset_reset="earliest", enable_auto_commit=False,
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        self._task = asyncio.create_task(self._read())

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task], timeout_s=10.0)
        await self._consumer.stop()

    async def _read(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=100)
            got = []
            for records in batch.values():
                for r in records:
                    env = Envelope.from_headers(r.headers or ())
                    got.append((env, decode(self.spec.message, r.value, env)))
            if got:
                async with self._changed:
                    self.items.extend(got)  # type: ignore[arg-type]
                    self._changed.notify_all()

    def messages(self, pred: Callable[[M], bool] = lambda _m: True) -> list[M]:
        return [m for _, m in self.items if pred(m)]

    async def wait(self, pred: Callable[[M], bool], count: int = 1,
                   timeout: float = 30.0) -> list[M]:
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(lambda: len(self.messages(pred)) >= count)
        except TimeoutError:
            raise AssertionError(
                f"{self.spec.name}: {len(self.messages(pred))} of {count} matching messages "
                f"within {timeout}s; have {[_brief(m) for m in self.messages()][-15:]}"
            ) from None
        return self.messages(pred)


def _brief(m: Message) -> str:
    if isinstance(m, RunEvent):
        return f"{m.run_id[:8]}#{m.seq}:{m.kind.value}:{m.reason or ''}"
    return type(m).__name__


def agent(doc: str | dict[str, Any], version: int = 1) -> AgentDefinition:
    raw = yaml.safe_load(doc) if isinstance(doc, str) else dict(doc)
    raw.setdefault("version", version)
    return AgentDefinition.model_validate(raw)


@dataclass
class ReasoningStack:
    kafka: KafkaSettings
    mongo: MongoSettings
    model: ScriptedModelServer
    publisher: Publisher
    reasoning: ReasoningApp | None = None
    follow: dict[str, Follower[Any]] = field(default_factory=dict)

    @property
    def events(self) -> Follower[RunEvent]:
        return self.follow["events"]

    @property
    def completed(self) -> Follower[RunCompleted]:
        return self.follow["completed"]

    @property
    def calls(self) -> Follower[ToolCall]:
        return self.follow["calls"]

    @property
    def requested(self) -> Follower[RunRequested]:
        return self.follow["requested"]

    @property
    def audit(self) -> Follower[Any]:
        return self.follow["audit"]

    async def publish_agents(self, *defs: AgentDefinition) -> None:
        for d in defs:
            await self.publisher.publish(AGENTS, d, message_id=f"{d.id}@{d.version}")

    async def ask(self, agent_id: str, text: str, *, session: str | None = None,
                  run_id: str | None = None, reply_topic: str | None = None) -> str:
        run_id = run_id or f"run-{uuid.uuid4().hex[:10]}"
        session = session or f"s-{uuid.uuid4().hex[:8]}"
        request = RunRequested(run_id=run_id, agent_id=agent_id, session_id=session,
                               user_id="u-1", input=text, reply_topic=reply_topic)
        await self.ready(request)
        return run_id

    async def ready(self, request: RunRequested, message_id: str | None = None) -> None:
        ready = RunReady(run_id=request.run_id, session_id=request.session_id, request=request,
                         context=RunContext(), prepared_at=datetime.now(UTC))
        await self.publisher.publish(RUNS_READY, ready, message_id=message_id,
                                     correlation_id=request.run_id)

    async def command(self, run: RunCompleted | str, session: str, kind: RunCommandKind,
                      call_id: str | None = None, reason: str | None = None) -> None:
        run_id = run if isinstance(run, str) else run.run_id
        cmd = RunCommand(command_id=uuid.uuid4().hex, run_id=run_id, session_id=session,
                         command=kind, actor=Actor(kind=ActorKind.USER, id="op-1"),
                         reason=reason, call_id=call_id, issued_at=datetime.now(UTC))
        await self.publisher.publish(RUNS_COMMANDS, cmd)

    async def answer(self, call: ToolCall, content: Any, *, ok: bool = True) -> None:
        from schemas.tools import ToolError, ToolErrorCode

        result = ToolResult(
            call_id=call.call_id, run_id=call.run_id, session_id=call.session_id,
            tool=call.tool, ok=ok, content=content if ok else None,
            error=None if ok else ToolError(code=ToolErrorCode.FAILED, message=str(content)),
            duration_ms=1,
        )
        await self.publisher.publish(TOOLS_RESULTS, result,
                                     message_id=f"result-{call.call_id}")

    async def finished(self, run_id: str, timeout: float = 30.0) -> RunCompleted:
        return (await self.completed.wait(lambda m: m.run_id == run_id, timeout=timeout))[0]

    def kinds(self, run_id: str) -> list[str]:
        events = sorted(self.events.messages(lambda e: e.run_id == run_id), key=lambda e: e.seq)
        return [e.kind.value for e in events]


def settings_for(model: ScriptedModelServer, **overrides: Any) -> ReasoningSettings:
    base: dict[str, Any] = {
        "model_base_url": model.base_url, "consumer_concurrency": 2, "sweep_interval_s": 0.2,
        "model_retry_base_delay_s": 0.01, "model_retry_max_delay_s": 0.05,
        "tool_modules": ["services.tools.builtins.calculator", "services.tools.builtins.clock"],
    }
    base.update(overrides)
    return ReasoningSettings(**base)


@contextlib.asynccontextmanager
async def reasoning_stack(
    kafka: KafkaSettings,
    mongo: MongoSettings,
    script: Any,
    agents: list[AgentDefinition],
    *,
    with_reasoning: bool = True,
    with_tools: bool = False,
    with_memory: bool = False,
    **overrides: Any,
) -> AsyncIterator[ReasoningStack]:
    async with contextlib.AsyncExitStack() as stack:
        model = await stack.enter_async_context(ScriptedModelServer(script))
        broker = make_broker(kafka, client_id="reasoning-test")
        publisher = Publisher(broker, source="mindstream/test", topic_prefix=kafka.topic_prefix)
        await broker.start()
        stack.push_async_callback(broker.stop)
        rs = ReasoningStack(kafka, mongo, model, publisher)
        await rs.publish_agents(*agents)
        for name, spec in [("events", RUNS_EVENTS), ("completed", RUNS_COMPLETED),
                           ("calls", TOOLS_CALLS), ("requested", RUNS_REQUESTED),
                           ("audit", AUDIT)]:
            follower: Follower[Any] = Follower(kafka.bootstrap_servers, spec, kafka.topic_prefix)
            await follower.start()
            stack.push_async_callback(follower.stop)
            rs.follow[name] = follower
        if with_tools:
            from services.tools.app import build as build_tools
            from services.tools.settings import ToolsSettings

            tools = build_tools(ToolsSettings(consumer_concurrency=1), kafka, mongo, http_port=0)
            await stack.enter_async_context(tools)
        if with_memory:
            from services.memory.app import build as build_memory
            from services.memory.settings import MemoryServiceSettings

            memory = build_memory(MemoryServiceSettings(consumer_concurrency=1), kafka, mongo,
                                  http_port=0)
            await stack.enter_async_context(memory)
        if with_reasoning:
            rs.reasoning = assemble(settings_for(model, **overrides), kafka, mongo, http_port=0)
            await stack.enter_async_context(rs.reasoning.runtime)
        yield rs
