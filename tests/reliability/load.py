"""Load for the scenarios, and the record of every request sent (what the checker holds
the system to).

Requests go out through the public :class:`~mindstream.client.MindstreamClient`
(``submit``: acked by the broker means *accepted*). Results are read from the
client's reply topic by a second reader here, so the suite needs only the
client's public surface. Two session shapes:

* *sequential*: the next request of a session is sent after the previous result
  arrived (the usual chat);
* *ordered*: a session's requests are sent back to back without waiting; the
  checker then holds the system to per-session order of the results (only for
  agents that answer in one step, where the architecture promises it).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from aiokafka import AIOKafkaConsumer

from mindstream.client import MindstreamClient
from schemas.codec import decode
from schemas.envelope import Envelope
from schemas.errors import ContractError
from schemas.knowledge import KnowledgeDocument
from schemas.runs import RunCompleted
from schemas.workflows import WorkflowEvent
from shared.tasks import cancel_and_wait
from tests.reliability.kafka_io import topic_partitions

__all__ = ["Driver", "Ends", "RequestLog", "Sent"]

E = TypeVar("E", RunCompleted, WorkflowEvent)


@dataclass
class Sent:
    run_id: str
    session_id: str
    agent: str
    text: str
    index: int  # position within its session
    ordered: bool
    accepted: bool = False
    attempts: int = 0
    refused: str | None = None  # why the client could not hand it to the broker
    sent_at: float = 0.0
    done_at: float | None = None
    workflow: bool = False  # a workflow run (run_id is its workflow_run_id, agent its workflow)


@dataclass
class RequestLog:
    """Every request of one scenario, in the order the client sent it."""

    scenario: str
    sent: list[Sent] = field(default_factory=list)
    documents: dict[str, KnowledgeDocument] = field(default_factory=dict)
    """The last version published of each knowledge document: what memory must hold."""

    def runs(self) -> list[Sent]:
        return [s for s in self.sent if not s.workflow]

    def accepted(self) -> list[Sent]:
        return [s for s in self.runs() if s.accepted]

    def run_ids(self) -> set[str]:
        return {s.run_id for s in self.accepted()}

    def workflow_run_ids(self) -> set[str]:
        return {s.run_id for s in self.sent if s.workflow and s.accepted}

    def ordered_sessions(self) -> dict[str, list[str]]:
        sessions: dict[str, list[Sent]] = {}
        for s in self.sent:
            if s.ordered:
                sessions.setdefault(s.session_id, []).append(s)
        # A session whose send failed and was retried may legitimately be reordered.
        return {sid: [s.run_id for s in sorted(items, key=lambda s: s.index)]
                for sid, items in sessions.items()
                if all(s.accepted and s.attempts == 1 for s in items)}


class Ends(Generic[E]):
    """Reads a topic from its start and keeps the first final message per id (run or
    workflow run), with a future per id a scenario waits on."""

    def __init__(self, bootstrap: str, topic: str, message: type[E],
                 final_of: Callable[[E], str | None]) -> None:
        self._bootstrap, self._topic = bootstrap, topic
        self._message: type[E] = message
        self._final_of: Callable[[E], str | None] = final_of
        self._results: dict[str, E] = {}
        self._waiters: dict[str, asyncio.Future[E]] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._arrived = asyncio.Condition()

    @classmethod
    def runs(cls, bootstrap: str, reply_topic: str) -> Ends[RunCompleted]:
        """Results of the runs the client sent (its reply topic)."""
        return Ends(bootstrap, reply_topic, RunCompleted, lambda m: m.run_id)

    @classmethod
    def workflows(cls, bootstrap: str, events_topic: str) -> Ends[WorkflowEvent]:
        """Final events of workflow runs."""
        return Ends(bootstrap, events_topic, WorkflowEvent,
                    lambda e: e.workflow_run_id if e.terminal else None)

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(bootstrap_servers=self._bootstrap, group_id=None,
                                          enable_auto_commit=False)
        await self._consumer.start()
        tps = await topic_partitions(self._consumer, self._topic)
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._consumer is not None
        while True:
            try:
                batch = await self._consumer.getmany(timeout_ms=500)
            except Exception:  # the broker may be restarting (scenario 2): keep reading
                await asyncio.sleep(0.5)
                continue
            for records in batch.values():
                for record in records:
                    try:
                        done = decode(self._message, record.value, Envelope.from_headers(
                            record.headers or ()))
                    except ContractError:
                        continue
                    key = self._final_of(done)
                    if key is None:
                        continue
                    self._results.setdefault(key, done)
                    waiter = self._waiters.pop(key, None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(done)
            if batch:
                async with self._arrived:
                    self._arrived.notify_all()

    @property
    def count(self) -> int:
        return len(self._results)

    async def progressed(self, more: int, timeout: float = 120.0) -> None:
        """Wait until ``more`` further results have arrived (load is flowing)."""
        target = self.count + more
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: self.count >= target)

    async def wait(self, key: str, timeout: float) -> E | None:
        if key in self._results:
            return self._results[key]
        waiter = self._waiters.setdefault(key, asyncio.get_running_loop().create_future())
        try:
            return await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except TimeoutError:
            return None

    def result(self, key: str) -> E | None:
        return self._results.get(key)

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task], timeout_s=10.0)
        if self._consumer is not None:
            await self._consumer.stop()


class Driver:
    """Sends requests for one scenario and waits for their results."""

    def __init__(self, client: MindstreamClient, completions: Ends[RunCompleted],
                 workflow_ends: Ends[WorkflowEvent], log: RequestLog, *, send_retries: int = 1,
                 result_timeout: float = 90.0) -> None:
        self.client, self.completions, self.log = client, completions, log
        self.workflow_ends = workflow_ends
        self.send_retries = send_retries
        self.result_timeout = result_timeout

    def new(self, session: str, agent: str, verb: str, index: int, *, ordered: bool) -> Sent:
        run_id = f"run-{self.log.scenario}-{uuid.uuid4().hex[:16]}"
        sent = Sent(run_id, session, agent, f"{verb} {run_id}", index, ordered)
        self.log.sent.append(sent)
        return sent

    async def send(self, sent: Sent) -> bool:
        """Hand a request to the broker; retried with the same run id (the idempotency key)."""
        sent.sent_at = time.monotonic()
        for attempt in range(1, self.send_retries + 1):
            sent.attempts = attempt
            try:
                if sent.workflow:
                    await self.client.start_workflow(
                        sent.agent, sent.text, user=f"user-{sent.session_id}",
                        workflow_run_id=sent.run_id, session=sent.session_id)
                else:
                    await self.client.submit(sent.agent, sent.text, session=sent.session_id,
                                             user=f"user-{sent.session_id}", run_id=sent.run_id)
            except Exception as exc:
                sent.refused = f"{type(exc).__name__}: {exc}"[:200]
                if attempt < self.send_retries:
                    await asyncio.sleep(min(2.0, 0.2 * attempt))
                continue
            sent.accepted, sent.refused = True, None
            return True
        return False

    async def workflow(self, session: str, workflow: str, text: str = "go",
                       timeout: float | None = None) -> WorkflowEvent | None:
        """Start a workflow run and wait for its final event (None: none in time)."""
        sent = Sent(f"wf-{self.log.scenario}-{uuid.uuid4().hex[:16]}", session, workflow, text,
                    0, ordered=False, workflow=True)
        self.log.sent.append(sent)
        if not await self.send(sent):
            return None
        done = await self.workflow_ends.wait(sent.run_id, timeout or self.result_timeout)
        if done is not None:
            sent.done_at = time.monotonic()
        return done

    async def await_result(self, sent: Sent, timeout: float | None = None) -> RunCompleted | None:
        if not sent.accepted:
            return None
        done = await self.completions.wait(sent.run_id, timeout or self.result_timeout)
        if done is not None and sent.done_at is None:
            sent.done_at = time.monotonic()
        return done

    async def one(self, session: str, agent: str, verb: str, index: int = 0,
                  timeout: float | None = None) -> tuple[Sent, RunCompleted | None]:
        sent = self.new(session, agent, verb, index, ordered=False)
        await self.send(sent)
        return sent, await self.await_result(sent, timeout)

    async def sequential(self, session: str, agent: str, verbs: list[str]) -> None:
        for index, verb in enumerate(verbs):
            sent = self.new(session, agent, verb, index, ordered=False)
            if await self.send(sent):
                await self.await_result(sent)

    async def ordered(self, session: str, agent: str, verbs: list[str], *,
                      wait: bool = True) -> list[Sent]:
        batch = [self.new(session, agent, verb, i, ordered=True) for i, verb in enumerate(verbs)]
        for sent in batch:
            await self.send(sent)
        if wait:
            await asyncio.gather(*(self.await_result(s) for s in batch))
        return batch

    async def until(self, stop: asyncio.Event, make: Callable[[int], Awaitable[None]],
                    *, workers: int) -> None:
        """``workers`` loops each running ``make(n)`` until ``stop`` is set."""

        async def loop(worker: int) -> None:
            n = 0
            while not stop.is_set():
                await make(worker * 1_000_000 + n)
                n += 1

        await asyncio.gather(*(loop(w) for w in range(workers)))
