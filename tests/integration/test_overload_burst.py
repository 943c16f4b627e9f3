"""Overload protection on real Kafka and FerretDB: a burst beyond capacity.

Reasoning is limited to one model call at a time (min = max concurrency 1) and
the scripted model takes 1.5 s per answer. A burst of high- and low-priority
runs arrives: while a model call is in flight, low-priority runs are refused at
once (``overloaded``, no model call, long before a model answer could come),
high-priority runs wait their turn and complete. Low-priority runs that arrive
when the model is free again are served: that is capacity, not overload.
"""

from __future__ import annotations

import uuid

import pytest
from aiokafka.partitioner import DefaultPartitioner

from schemas.runs import RunCompleted, RunPriority, RunRequested
from shared.settings import KafkaSettings, MongoSettings
from tests.integration.reasoning_harness import agent, reasoning_stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

DELAY_MS = 1500
SCRIPT = {"rules": [{"name": "slow", "text": "done", "delay_ms": DELAY_MS}]}
PARTITIONS = [0, 1, 2]  # the test topics have 3


def _session_on(partition: int) -> str:
    while True:
        session = f"s-{uuid.uuid4().hex[:10]}"
        if DefaultPartitioner()(session.encode(), PARTITIONS, PARTITIONS) == partition:
            return session


def _request(priority: RunPriority, partition: int) -> RunRequested:
    return RunRequested(run_id=f"run-{priority.value}-{uuid.uuid4().hex[:8]}", agent_id="busy",
                        session_id=_session_on(partition), user_id="u-1", input="work",
                        priority=priority)


async def test_low_priority_is_refused_fast_while_high_priority_completes(
    topics: KafkaSettings, mongo_settings: MongoSettings,
) -> None:
    busy = agent({"id": "busy", "instructions": "You are busy.", "model": {"name": "scripted"}})
    async with reasoning_stack(
        topics, mongo_settings, SCRIPT, [busy], consumer_concurrency=3, overload_enabled=True,
        overload_min_concurrency=1, overload_max_concurrency=1, overload_queue_low=0,
    ) as rs:
        assert rs.reasoning is not None and rs.reasoning.reasoner.admission is not None
        # On each partition: one high-priority run, then three low-priority ones.
        burst = [_request(priority, p) for p in PARTITIONS
                 for priority in (RunPriority.HIGH, RunPriority.LOW, RunPriority.LOW,
                                  RunPriority.LOW)]
        for request in burst:
            await rs.ready(request)
        ids = {r.run_id: r.priority for r in burst}
        done = await rs.completed.wait(lambda m: m.run_id in ids, count=len(burst), timeout=90)

    def of(priority: RunPriority) -> list[RunCompleted]:
        return [m for m in done if ids[m.run_id] is priority]

    high, low = of(RunPriority.HIGH), of(RunPriority.LOW)
    assert [m.status.value for m in high] == ["completed"] * 3
    refused = [m for m in low if m.status.value == "failed"]
    assert len(refused) >= 5, [(m.status.value, m.error) for m in low]
    for m in refused:
        assert (m.error or "").startswith("overloaded:"), m.error
        assert m.metrics.model_calls == 0
        assert m.metrics.duration_ms < DELAY_MS  # refused before any model answer could come
    served = [m for m in low if m.status.value == "completed"]
    assert len(refused) + len(served) == 9
    assert len(rs.model.requests) == 3 + len(served)  # refused runs never reached the model
    failed_events = rs.events.messages(lambda e: e.run_id in {m.run_id for m in refused}
                                       and e.kind.value == "run.failed")
    assert len(failed_events) == len(refused)
    assert all((e.reason or "").startswith("overloaded:") for e in failed_events)
