"""Reading the run topics back: every record from the beginning, and real records give
every stage of both kinds of run (the bench once reported no stages at all)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition

from mindstream.bench.capture import Captured, drain
from mindstream.bench.stages import ANSWER_POINTS, TOOL_POINTS, stage_breakdown, timelines

pytestmark = pytest.mark.unit

DATA = Path(__file__).parent / "data" / "real_runs.json"
PREFIX = "bench171815ab3f1."
ANSWER_RUN = "run-bench-fe5f9951cf7941a09156943e99f6f8fa"
TOOL_RUN = "run-bench-6573e6796d664995b48d0d67b5a13cae"


def real_records() -> list[Captured]:
    """One answer run and one tool run exactly as a bench captured them (headers and bodies)."""
    return [Captured(**{**r, "value": r["value"].encode()}) for r in json.loads(DATA.read_text())]


@dataclass
class FakeConsumer:
    """aiokafka's behaviour that mattered: with no group, ``assign`` starts a reset to the
    *latest* offset, and a ``seek_to_beginning`` issued while that reset is in flight is
    overwritten by it; only an explicit ``seek`` sets the position for sure."""

    log: dict[TopicPartition, list[Captured]]
    begin: int = 0

    def __post_init__(self) -> None:
        self.pos = {tp: self.begin + len(recs) for tp, recs in self.log.items()}  # the racing reset

    async def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(tps, self.begin)

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.begin + len(self.log[tp]) for tp in tps}

    async def seek_to_beginning(self, *tps: TopicPartition) -> bool:
        return True  # lost to the in-flight reset to the latest offset

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.pos[tp] = offset

    async def position(self, tp: TopicPartition) -> int:
        return self.pos[tp]

    async def getmany(self, *tps: TopicPartition, timeout_ms: int,
                      max_records: int) -> dict[TopicPartition, list[Any]]:
        out: dict[TopicPartition, list[Any]] = {}
        for tp in tps:
            start = self.pos[tp] - self.begin
            chunk = self.log[tp][start:start + 2]  # a few per fetch, as a real fetch can be
            out[tp] = [SimpleNamespace(
                topic=c.topic, offset=self.pos[tp] + i, key=c.key.encode(), value=c.value,
                headers=[("ce_id", c.ce_id.encode()), ("ce_type", c.ce_type.encode()),
                         ("correlation_id", c.correlation_id.encode()), ("ce_time", c.ce_time.encode())],
            ) for i, c in enumerate(chunk)]
            self.pos[tp] += len(chunk)
        return out


def partitioned(records: list[Captured]) -> dict[TopicPartition, list[Captured]]:
    log: dict[TopicPartition, list[Captured]] = {}
    for r in records:
        log.setdefault(TopicPartition(r.topic, 0), []).append(r)
    return log


@pytest.mark.parametrize("begin", [0, 7])
async def test_drain_reads_every_record_from_the_beginning(begin: int) -> None:
    records = real_records()
    log = partitioned(records)
    log[TopicPartition(PREFIX + "mindstream.tools.calls.v1", 1)] = []  # an empty partition
    consumer: Any = FakeConsumer(log, begin=begin)

    got = await drain(consumer, list(log), timeout_s=5.0)

    assert sorted(got, key=lambda c: c.ce_id) == sorted(records, key=lambda c: c.ce_id)


def test_real_records_give_every_stage_of_both_runs() -> None:
    records = real_records()
    times = {ANSWER_RUN: (1795799940.470, 1795799940.625), TOOL_RUN: (1795799943.525, 1795799943.915)}
    lines = timelines(records, PREFIX, times)

    assert set(ANSWER_POINTS) <= set(lines[ANSWER_RUN])
    assert set(TOOL_POINTS) <= set(lines[TOOL_RUN])
    answer = stage_breakdown([lines[ANSWER_RUN]], ANSWER_POINTS)
    tool = stage_breakdown([lines[TOOL_RUN]], TOOL_POINTS)
    assert len(answer) == len(ANSWER_POINTS) - 1
    assert len(tool) == len(TOOL_POINTS) - 1
    total = sum(s.ms.p50 for s in answer)
    assert total == pytest.approx((times[ANSWER_RUN][1] - times[ANSWER_RUN][0]) * 1000, abs=0.5)
