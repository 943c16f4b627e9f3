"""``MindstreamClient``: publish run requests and get their results from Python.

    async with MindstreamClient() as client:
        result = await client.run("assistant", "What is 2+2?", session="s-1", user="u-1")
        print(result.output)

        async for event in client.stream("assistant", "Tell me a story", session="s-1"):
            print(event.kind, event.text or "")

How it works: the client publishes a ``RunRequested`` to
``mindstream.runs.requested.v1`` with a per-client reply topic, where the
reasoning service also sends the run's ``RunCompleted``. For live events it
reads ``mindstream.runs.events.v1`` -- only the one partition that the
session's key maps to, starting at its end before the request is sent, so
nothing is missed and nothing else is read.

It speaks the public contracts with a plain aiokafka producer and consumer;
any Kafka client in any language can do the same (see the README).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.partitioner import DefaultPartitioner

from schemas.codec import decode, encode
from schemas.common import Actor, ActorKind
from schemas.envelope import Envelope
from schemas.errors import ContractError
from schemas.runs import (
    RunCommand,
    RunCommandKind,
    RunCompleted,
    RunEvent,
    RunPriority,
    RunRequested,
)
from schemas.topics import (
    RUNS_COMMANDS,
    RUNS_EVENTS,
    RUNS_REQUESTED,
    WORKFLOWS_COMMANDS,
    WORKFLOWS_EVENTS,
    WORKFLOWS_REQUESTED,
    TopicSpec,
)
from schemas.workflows import (
    WorkflowCommandKind,
    WorkflowEvent,
    WorkflowRequested,
)
from shared.settings import KafkaSettings
from shared.tasks import cancel_and_wait
from shared.workflow_messages import (
    build_workflow_command,
    build_workflow_request,
    new_workflow_run_id,
)

__all__ = ["MindstreamClient", "RunFailedError", "RunTimeoutError", "WorkflowFailedError"]

SOURCE = "mindstream/client"
REPLY_RETENTION_MS = 24 * 3600 * 1000


class RunTimeoutError(TimeoutError):
    """No result arrived in time; the run may still finish later."""


class WorkflowFailedError(RuntimeError):
    def __init__(self, event: WorkflowEvent) -> None:
        super().__init__(f"workflow run {event.workflow_run_id} {event.kind.value}: "
                         f"{event.reason or 'no reason given'}")
        self.event = event


class RunFailedError(RuntimeError):
    def __init__(self, result: RunCompleted) -> None:
        super().__init__(f"run {result.run_id} {result.status.value}: {result.error or 'no reason given'}")
        self.result = result


@dataclass
class _Waiter:
    future: asyncio.Future[RunCompleted] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())


class MindstreamClient:
    def __init__(
        self,
        bootstrap_servers: str | None = None,
        *,
        topic_prefix: str | None = None,
        client_id: str | None = None,
        settings: KafkaSettings | None = None,
    ) -> None:
        base = settings or KafkaSettings()
        self._bootstrap = bootstrap_servers or base.bootstrap_servers
        self._prefix = base.topic_prefix if topic_prefix is None else topic_prefix
        self.client_id = client_id or f"client-{uuid.uuid4().hex[:12]}"
        self.reply_topic = f"{self._prefix}mindstream.replies.{self.client_id}"
        self._producer: AIOKafkaProducer | None = None
        self._replies: AIOKafkaConsumer | None = None
        self._reply_task: asyncio.Task[None] | None = None
        self._waiters: dict[str, _Waiter] = {}
        self._done: dict[str, RunCompleted] = {}

    def topic(self, spec: TopicSpec) -> str:
        return spec.physical(self._prefix)

    # -- lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        """Connect, check the run topics exist, and create this client's reply topic.

        Raises :class:`RuntimeError` at once (instead of waiting on metadata for
        the first request) when ``mindstream.runs.requested.v1`` is missing: a
        wrong ``topic_prefix`` or topics never applied.
        """
        admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap)
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            if self.topic(RUNS_REQUESTED) not in existing:
                raise RuntimeError(
                    f"topic {self.topic(RUNS_REQUESTED)} does not exist at {self._bootstrap}: "
                    "check the topic prefix, or run `mindstream topics apply`")
            if self.reply_topic not in existing:
                try:
                    await admin.create_topics([NewTopic(self.reply_topic, 1, 1, topic_configs={
                        "retention.ms": str(REPLY_RETENTION_MS)})])
                except TopicAlreadyExistsError:
                    pass
            # Wait until the new topic is in the cluster's metadata before assigning it
            # (an early assignment spams "not found in cluster metadata" warnings).
            async with asyncio.timeout(10):
                while self.reply_topic not in set(await admin.list_topics()):  # noqa: ASYNC110 - polling the broker; no event to await
                    await asyncio.sleep(0.05)
        finally:
            await admin.close()
        self._producer = AIOKafkaProducer(bootstrap_servers=self._bootstrap, acks="all",
                                          enable_idempotence=True, client_id=self.client_id)
        await self._producer.start()
        self._replies = AIOKafkaConsumer(bootstrap_servers=self._bootstrap, group_id=None,
                                         enable_auto_commit=False, client_id=self.client_id)
        await self._replies.start()
        async with asyncio.timeout(10):
            while self._replies.partitions_for_topic(self.reply_topic) is None:
                await self._replies._client.force_metadata_update()
        tp = TopicPartition(self.reply_topic, 0)
        self._replies.assign([tp])
        await self._replies.seek_to_beginning(tp)
        self._reply_task = asyncio.create_task(self._read_replies(), name="mindstream-replies")

    async def close(self) -> None:
        """Stop reading replies and flush what was sent; pending waits get cancelled."""
        if self._reply_task is not None:
            await cancel_and_wait([self._reply_task], timeout_s=10.0)
        for waiter in self._waiters.values():
            waiter.future.cancel()
        if self._replies is not None:
            await self._replies.stop()
        if self._producer is not None:
            await self._producer.stop()

    async def __aenter__(self) -> MindstreamClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _read_replies(self) -> None:
        assert self._replies is not None
        async for record in self._replies:
            try:
                result = decode(RunCompleted, record.value, Envelope.from_headers(record.headers))
            except ContractError:
                continue
            self._done[result.run_id] = result
            waiter = self._waiters.pop(result.run_id, None)
            if waiter is not None and not waiter.future.done():
                waiter.future.set_result(result)

    # -- requests ---------------------------------------------------------------

    async def submit(self, agent: str, text: str, *, session: str | None = None,
                     user: str = "anonymous", run_id: str | None = None,
                     priority: RunPriority = RunPriority.NORMAL,
                     metadata: dict[str, str] | None = None) -> RunRequested:
        """Publish a run request and return it (its ``run_id`` is the idempotency key)."""
        request = RunRequested(
            run_id=run_id or f"run-{uuid.uuid4().hex}", agent_id=agent,
            session_id=session or f"session-{uuid.uuid4().hex[:12]}", user_id=user, input=text,
            reply_topic=self.reply_topic, priority=priority, metadata=metadata or {},
        )
        await self._send(RUNS_REQUESTED, request, correlation_id=request.run_id)
        return request

    async def run(self, agent: str, text: str, *, timeout: float = 120.0, raise_on_failure: bool = True,
                  **kwargs: Any) -> RunCompleted:
        """Submit and wait for the final result."""
        waiter = _Waiter()
        request = await self._submit_waiting(agent, text, waiter, **kwargs)
        return await self._wait(request, waiter, timeout, raise_on_failure)

    async def stream(self, agent: str, text: str, *, timeout: float = 120.0,
                     **kwargs: Any) -> AsyncIterator[RunEvent | RunCompleted]:
        """Submit and yield the run's events as they happen, then its ``RunCompleted``."""
        session = kwargs.pop("session", None) or f"session-{uuid.uuid4().hex[:12]}"
        events = await self._session_events(session)
        try:
            waiter = _Waiter()
            request = await self._submit_waiting(agent, text, waiter, session=session, **kwargs)
            seen: set[int] = set()  # a step re-published after a crash repeats its events

            def fresh(record: Any) -> RunEvent | None:
                event = self._decode_event(record.headers, record.value)
                if event is None or event.run_id != request.run_id or event.seq in seen:
                    return None
                seen.add(event.seq)
                return event

            async with asyncio.timeout(timeout):
                while True:
                    done = waiter.future.done()
                    # After the result, one more read drains what was published just before it.
                    batch = await events.getmany(timeout_ms=200 if done else 100)
                    for records in batch.values():
                        for record in records:
                            if (event := fresh(record)) is not None:
                                yield event
                    if done:
                        yield waiter.future.result()
                        return
        except TimeoutError:
            raise RunTimeoutError(f"no result for the run within {timeout:.0f}s") from None
        finally:
            await events.stop()

    async def cancel(self, run_id: str, session: str, *, reason: str | None = None,
                     actor: str = "client") -> None:
        await self.command(run_id, session, RunCommandKind.CANCEL, reason=reason, actor=actor)

    async def command(self, run_id: str, session: str, kind: RunCommandKind, *,
                      call_id: str | None = None, reason: str | None = None,
                      actor: str = "client") -> None:
        command = RunCommand(command_id=f"cmd-{uuid.uuid4().hex}", run_id=run_id, session_id=session,
                             command=kind, actor=Actor(kind=ActorKind.USER, id=actor),
                             call_id=call_id, reason=reason)
        await self._send(RUNS_COMMANDS, command, correlation_id=run_id)

    # -- workflows ---------------------------------------------------------------

    async def start_workflow(self, workflow: str, text: str, *, user: str = "anonymous",
                             workflow_run_id: str | None = None, session: str | None = None,
                             metadata: dict[str, str] | None = None) -> WorkflowRequested:
        """Publish a workflow request; ``workflow_run_id`` is its idempotency key."""
        request = build_workflow_request(workflow, text, user=user,
                                         workflow_run_id=workflow_run_id, session=session,
                                         metadata=metadata)
        await self._send(WORKFLOWS_REQUESTED, request, correlation_id=request.workflow_run_id)
        return request

    async def follow_workflow(self, workflow: str, text: str, *, timeout: float = 600.0,
                              **kwargs: Any) -> AsyncIterator[WorkflowEvent]:
        """Start a workflow and yield its events until the final one (included)."""
        run_id = kwargs.pop("workflow_run_id", None) or new_workflow_run_id()
        events = await self._keyed_partition(WORKFLOWS_EVENTS, run_id)
        seen: set[int] = set()  # a step re-published after a crash repeats its events
        try:
            await self.start_workflow(workflow, text, workflow_run_id=run_id, **kwargs)
            async with asyncio.timeout(timeout):
                while True:
                    for records in (await events.getmany(timeout_ms=200)).values():
                        for record in records:
                            try:
                                event = decode(WorkflowEvent, record.value,
                                               Envelope.from_headers(record.headers))
                            except ContractError:
                                continue
                            if event.workflow_run_id != run_id or event.seq in seen:
                                continue
                            seen.add(event.seq)
                            yield event
                            if event.terminal:
                                return
        except TimeoutError:
            raise RunTimeoutError(f"workflow run {run_id} did not end within {timeout:.0f}s") from None
        finally:
            await events.stop()

    async def run_workflow(self, workflow: str, text: str, *, timeout: float = 600.0,
                           raise_on_failure: bool = True, **kwargs: Any) -> WorkflowEvent:
        """Start a workflow and wait for its final event (completed, failed or cancelled)."""
        async for event in self.follow_workflow(workflow, text, timeout=timeout, **kwargs):
            if event.terminal:
                if raise_on_failure and event.kind.value != "workflow.completed":
                    raise WorkflowFailedError(event)
                return event
        raise RunTimeoutError("the workflow's events ended without a final event")

    async def workflow_command(self, workflow_run_id: str, kind: WorkflowCommandKind, *,
                               step: str | None = None, reason: str | None = None,
                               actor: str = "client") -> None:
        """Cancel a workflow run, or approve/reject its waiting approval step."""
        command = build_workflow_command(workflow_run_id, kind,
                                         Actor(kind=ActorKind.USER, id=actor), step=step,
                                         reason=reason)
        await self._send(WORKFLOWS_COMMANDS, command, correlation_id=workflow_run_id)

    async def _keyed_partition(self, spec: TopicSpec, key: str) -> AIOKafkaConsumer:
        """A consumer on the one partition ``key`` maps to, positioned at its end."""
        topic = self.topic(spec)
        consumer = AIOKafkaConsumer(bootstrap_servers=self._bootstrap, group_id=None,
                                    enable_auto_commit=False, client_id=self.client_id)
        await consumer.start()
        partitions = consumer.partitions_for_topic(topic)
        if partitions is None:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or {0}
        ordered = sorted(partitions)
        tp = TopicPartition(topic, DefaultPartitioner()(key.encode(), ordered, ordered))
        consumer.assign([tp])
        await consumer.seek_to_end(tp)
        await consumer.position(tp)
        return consumer

    # -- internals --------------------------------------------------------------

    async def _submit_waiting(self, agent: str, text: str, waiter: _Waiter,
                              **kwargs: Any) -> RunRequested:
        run_id = kwargs.pop("run_id", None) or f"run-{uuid.uuid4().hex}"
        self._waiters[run_id] = waiter
        if run_id in self._done:
            waiter.future.set_result(self._done[run_id])
        return await self.submit(agent, text, run_id=run_id, **kwargs)

    async def _wait(self, request: RunRequested, waiter: _Waiter, timeout: float,
                    raise_on_failure: bool) -> RunCompleted:
        try:
            result = await asyncio.wait_for(asyncio.shield(waiter.future), timeout)
        except TimeoutError:
            self._waiters.pop(request.run_id, None)
            raise RunTimeoutError(f"no result for run {request.run_id} within {timeout:.0f}s") from None
        if raise_on_failure and result.status.value != "completed":
            raise RunFailedError(result)
        return result

    async def _send(self, spec: TopicSpec, message: Any, *, correlation_id: str) -> None:
        if self._producer is None:
            raise RuntimeError("MindstreamClient is not started (use `async with`)")
        envelope = Envelope.new(message, source=SOURCE, correlation_id=correlation_id)
        await self._producer.send_and_wait(self.topic(spec), encode(message), key=spec.key_of(message),
                                           headers=envelope.to_headers())

    async def _session_events(self, session: str) -> AIOKafkaConsumer:
        topic = self.topic(RUNS_EVENTS)
        consumer = AIOKafkaConsumer(bootstrap_servers=self._bootstrap, group_id=None,
                                    enable_auto_commit=False, client_id=self.client_id)
        await consumer.start()
        partitions = consumer.partitions_for_topic(topic)
        if partitions is None:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or {0}
        ordered = sorted(partitions)
        partition = DefaultPartitioner()(session.encode(), ordered, ordered)
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        await consumer.seek_to_end(tp)
        await consumer.position(tp)  # resolve the end offset now, before the request is sent
        return consumer

    @staticmethod
    def _decode_event(headers: Any, value: bytes) -> RunEvent | None:
        try:
            return decode(RunEvent, value, Envelope.from_headers(headers))
        except ContractError:
            return None

