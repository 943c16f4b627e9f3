"""One object a scenario works with: the stack, a client, the checker, the results.

A scenario calls :meth:`Harness.begin`, drives load and faults through the
returned :class:`ScenarioRun`, then :meth:`ScenarioRun.finish`, which waits
for the system to settle, runs every check, records the figures and fails
the test on any violation.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition
from pymongo import AsyncMongoClient

from mindstream.client import MindstreamClient
from schemas.runs import RunCompleted
from schemas.topics import WORKFLOWS_EVENTS
from schemas.workflows import WorkflowEvent
from tests.infra import delete_topics_with_prefix
from tests.reliability.checker import Checker, Verdict
from tests.reliability.kafka_io import Rec
from tests.reliability.load import Driver, Ends, RequestLog
from tests.reliability.results import Results
from tests.reliability.stack import Stack, StackSpec
from tests.support.waiting import eventually

__all__ = ["Harness", "ScenarioRun", "running_stack"]


@dataclass
class Harness:
    stack: Stack
    checker: Checker
    client: MindstreamClient
    completions: Ends[RunCompleted]
    workflow_ends: Ends[WorkflowEvent]
    results: Results

    async def begin(self, name: str, **driver_options: Any) -> ScenarioRun:
        await self.heal()
        log = RequestLog(name)
        driver = Driver(self.client, self.completions, self.workflow_ends, log,
                        **driver_options)
        return ScenarioRun(self, name, log, driver, await self.checker.dlq_offsets())

    async def heal(self) -> None:
        """Restart anything a previous scenario left dead, so scenarios stay independent."""
        for instance in self.stack.dead():
            await self.stack.restart(instance)


@dataclass
class ScenarioRun:
    harness: Harness
    name: str
    log: RequestLog
    driver: Driver
    dlq_since: Mapping[TopicPartition, int]
    started: float = field(default_factory=time.monotonic)
    figures: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def expect(self, ok: bool, problem: str) -> None:
        """A scenario-specific promise; a broken one fails the scenario at :meth:`finish`."""
        if not ok:
            self.problems.append(problem)

    async def finish(self, *, dlq_expected: Callable[[Rec], bool] = lambda _r: False,
                     check_order: bool = True,
                     extra_groups: Mapping[str, Iterable[str]] | None = None,
                     idle_timeout_s: float = 180.0) -> Verdict:
        checker = self.harness.checker
        settle_s = await checker.wait_idle(idle_timeout_s, extra_groups)
        await self._audit_settled()
        verdict = await checker.check(self.log, dlq_since=self.dlq_since,
                                      dlq_expected=dlq_expected, check_order=check_order)
        dead = self.harness.stack.dead()
        for instance in dead:
            verdict.fail(f"service {instance} died")
        for problem in self.problems:
            verdict.fail(problem)
        verdict.figures.update(self.figures)
        verdict.figures.update({
            "settle_s": round(settle_s, 1),
            "duration_s": round(time.monotonic() - self.started, 1),
            "passed": not verdict.violations, "notes": self.notes,
            "violations": verdict.violations[:20],
        })
        self.harness.results.record(self.name, verdict.figures)
        assert not verdict.violations, verdict.summary() + (
            "\n" + self.harness.stack.log_tails(10) if dead else "")
        return verdict

    async def _audit_settled(self, timeout_s: float = 60.0) -> None:
        """The audit consumer has caught up (lag 0); give the chain head a moment to follow.
        Not reaching it is not a failure here: the check that follows reports what is off."""
        async def settled() -> bool:
            probe = Verdict(self.name)
            await self.harness.checker.check_audit(probe)
            return not probe.violations

        with contextlib.suppress(AssertionError):
            await eventually(settled, what="audit log settled", timeout_s=timeout_s,
                             every_s=0.5)


@contextlib.asynccontextmanager
async def running_stack(spec: StackSpec, results: Results, *,
                        replicas: Mapping[str, int] | None = None,
                        extra_env: Mapping[str, str] | None = None) -> AsyncIterator[Harness]:
    """A whole stack, started, with a client; everything removed afterwards."""
    stack = Stack(spec, extra_env=extra_env)
    client: MindstreamClient | None = None
    readers: list[Ends[Any]] = []
    checker: Checker | None = None
    try:
        await stack.start(replicas)
        client = MindstreamClient(spec.kafka_bootstrap, topic_prefix=spec.prefix,
                                  client_id=f"rel-{spec.tag}")
        await client.start()
        completions = Ends.runs(spec.kafka_bootstrap, client.reply_topic)
        workflow_ends = Ends.workflows(spec.kafka_bootstrap, client.topic(WORKFLOWS_EVENTS))
        for reader in (completions, workflow_ends):
            await reader.start()
            readers.append(reader)
        checker = Checker(stack)
        yield Harness(stack, checker, client, completions, workflow_ends, results)
    finally:
        stack.stop()  # first, and synchronously: nothing may be left running
        try:
            for reader in readers:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(reader.stop(), 30)
            if client is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.close(), 30)
            if checker is not None:
                await checker.close()
        finally:
            await _drop(spec)


async def _drop(spec: StackSpec) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(delete_topics_with_prefix(spec.kafka_bootstrap, spec.prefix), 30)
    with contextlib.suppress(Exception):
        mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            spec.mongo_uri, serverSelectionTimeoutMS=5000)
        try:
            await asyncio.wait_for(mongo.drop_database(spec.database), 30)
        finally:
            await mongo.close()


def work_dir(base: Path, tag: str) -> Path:
    path = base / tag
    path.mkdir(parents=True, exist_ok=True)
    return path
