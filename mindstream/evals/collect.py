"""What the eval's runs asked for: tool calls with their argument values.

A run's events name each requested tool and its argument *names* only (values
may be sensitive and events fan out widely). The values travel on the
tool-call topics, so the watcher reads three topics at once, every partition,
from their ends at start (nothing before the eval is read):

- ``mindstream.runs.events.v1``: ``tool.requested`` (name, call id, kind) and the
  run's terminal event, which says "everything this run asked for is out";
- ``mindstream.tools.calls.v1``: :class:`ToolCall` (tool arguments);
- ``mindstream.knowledge.queries.v1``: :class:`KnowledgeQuery` (query, top_k).

Only runs registered with :meth:`RunWatch.expect` are kept, so a busy cluster's
other traffic costs a decode and nothing more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from mindstream.evals.checks import ObservedCall
from schemas.codec import decode
from schemas.envelope import Envelope
from schemas.errors import ContractError
from schemas.knowledge import KnowledgeQuery
from schemas.runs import RunEvent, RunEventKind
from schemas.tools import ToolCall
from schemas.topics import KNOWLEDGE_QUERIES, RUNS_EVENTS, TOOLS_CALLS
from shared.tasks import cancel_and_wait

__all__ = ["RunWatch"]

log = logging.getLogger("mindstream.evals")

_TERMINAL = frozenset({RunEventKind.RUN_COMPLETED, RunEventKind.RUN_FAILED,
                       RunEventKind.RUN_CANCELLED})
_DISPATCHED = frozenset({"tool", "knowledge"})  # kinds whose values arrive on a call topic


@dataclass
class _Run:
    requested: list[tuple[str | None, str, tuple[str, ...], str]] = field(default_factory=list)
    ended: asyncio.Event = field(default_factory=asyncio.Event)


class RunWatch:
    def __init__(self, bootstrap: str, prefix: str = "", *, client_id: str = "mindstream-eval"):
        self._bootstrap, self._prefix, self._client_id = bootstrap, prefix, client_id
        self._runs: dict[str, _Run] = {}
        self._values: dict[str, dict[str, Any]] = {}
        self._changed = asyncio.Condition()
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._types = {
            RUNS_EVENTS.physical(prefix): RunEvent,
            TOOLS_CALLS.physical(prefix): ToolCall,
            KNOWLEDGE_QUERIES.physical(prefix): KnowledgeQuery,
        }

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self._bootstrap, group_id=None,
                                    enable_auto_commit=False, client_id=self._client_id)
        await consumer.start()
        self._consumer = consumer
        tps: list[TopicPartition] = []
        for name in self._types:
            partitions = consumer.partitions_for_topic(name)
            if partitions is None:
                await consumer._client.force_metadata_update()
                partitions = consumer.partitions_for_topic(name) or set()
            tps += [TopicPartition(name, p) for p in sorted(partitions)]
        if tps:
            consumer.assign(tps)
            await consumer.seek_to_end(*tps)
            for tp in tps:
                await consumer.position(tp)  # pin "now" before the first request is sent
        self._task = asyncio.create_task(self._read(), name="eval-run-watch")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task], timeout_s=10.0)
        if self._consumer is not None:
            await self._consumer.stop()

    async def __aenter__(self) -> RunWatch:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def expect(self, run_id: str) -> None:
        """Keep what this run asks for (call before its request is published)."""
        self._runs.setdefault(run_id, _Run())

    async def _read(self) -> None:
        assert self._consumer is not None
        while True:
            batch = await self._consumer.getmany(timeout_ms=200)
            changed = False
            for tp, records in batch.items():
                kind = self._types[tp.topic]
                for record in records:
                    try:
                        message = decode(kind, record.value, Envelope.from_headers(record.headers))
                    except ContractError:
                        continue
                    changed |= self._apply(message)
            if changed:
                async with self._changed:
                    self._changed.notify_all()

    def _apply(self, message: Any) -> bool:
        run = self._runs.get(message.run_id)
        if run is None:
            return False
        if isinstance(message, ToolCall):
            self._values[message.call_id] = dict(message.arguments)
        elif isinstance(message, KnowledgeQuery):
            self._values[message.call_id] = {"query": message.query, "top_k": message.top_k}
        elif message.kind is RunEventKind.TOOL_REQUESTED and message.tool is not None:
            names = message.data.get("arguments") or []
            entry = (message.call_id, message.tool, tuple(str(n) for n in names),
                     str(message.data.get("kind") or "tool"))
            if entry not in run.requested:  # a re-published step repeats its events
                run.requested.append(entry)
        elif message.kind in _TERMINAL:
            run.ended.set()
        else:
            return False
        return True

    async def calls(self, run_id: str, *, timeout: float = 5.0,
                    values_grace: float = 2.0) -> list[ObservedCall]:
        """The run's calls, once its terminal event is seen (or ``timeout`` passed).

        Values of dispatched calls are awaited a little longer (``values_grace``):
        they travel on another topic, and this reader may be behind on it.
        """
        run = self._runs.get(run_id)
        if run is None:
            return []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await run.ended.wait()

        def complete() -> bool:
            return all(cid in self._values for cid, _t, _n, kind in run.requested
                       if cid is not None and kind in _DISPATCHED)

        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(values_grace), self._changed:
                await self._changed.wait_for(complete)
        return [ObservedCall(tool=tool, call_id=cid, arguments=self._values.get(cid or ""),
                             argument_names=names)
                for cid, tool, names, _kind in run.requested]
