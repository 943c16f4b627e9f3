"""A message the consumer does not take is committed without the handler or the ledger
(two round trips saved per message); what it takes still goes through both."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from schemas.codec import encode
from schemas.envelope import Envelope
from schemas.runs import RunCompleted, RunStatus
from schemas.topics import RUNS_COMPLETED
from shared.kafka.consumer import ConsumerPipeline, Delivery, Outcome

pytestmark = pytest.mark.unit


class Ledger:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.marked: set[str] = set()

    async def seen(self, message_id: str) -> bool:
        self.calls.append("seen")
        return message_id in self.marked

    async def mark(self, message_id: str, topic: str, partition: int, offset: int) -> None:
        self.calls.append("mark")
        self.marked.add(message_id)


def completion(run_id: str, parent: str | None) -> Any:
    msg = RunCompleted(run_id=run_id, session_id="s-1", agent_id="a@1", user_id="u-1",
                       parent_run_id=parent, status=RunStatus.COMPLETED, output="ok",
                       completed_at=datetime.now(UTC))
    envelope = Envelope.new(msg, source="mindstream/test")
    return SimpleNamespace(topic="p.mindstream.runs.completed.v1", partition=0, offset=1,
                           key=b"s-1", value=encode(msg), headers=envelope.to_headers())


@pytest.fixture
def rig() -> tuple[ConsumerPipeline[RunCompleted], Ledger, list[str]]:
    ledger, handled = Ledger(), []

    async def handler(delivery: Delivery[RunCompleted]) -> None:
        handled.append(delivery.message.run_id)

    pipeline: ConsumerPipeline[RunCompleted] = ConsumerPipeline(
        spec=RUNS_COMPLETED, group="g", handler=handler, publisher=None,  # type: ignore[arg-type]
        ledger=ledger,  # type: ignore[arg-type]
        accepts=lambda m: m.parent_run_id is not None)
    return pipeline, ledger, handled


async def test_a_message_not_taken_costs_no_ledger_round_trip(
    rig: tuple[ConsumerPipeline[RunCompleted], Ledger, list[str]],
) -> None:
    pipeline, ledger, handled = rig
    assert await pipeline.process(completion("run-top", None)) is Outcome.NOT_ACCEPTED
    assert ledger.calls == [] and handled == []


async def test_a_message_taken_is_deduplicated_as_before(
    rig: tuple[ConsumerPipeline[RunCompleted], Ledger, list[str]],
) -> None:
    pipeline, ledger, handled = rig
    record = completion("run-child", "run-parent")
    assert await pipeline.process(record) is Outcome.HANDLED
    assert await pipeline.process(record) is Outcome.DUPLICATE  # a redelivery
    assert handled == ["run-child"] and ledger.calls == ["seen", "mark", "seen"]
