"""``Publisher.publish_many``: sends in order without waiting, then waits for every ack.

(Lives with the bench tests: it is the pipelined publish the bench's profile asked for.)
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.runs import RunEvent, RunEventKind
from schemas.topics import RUNS_EVENTS
from shared.kafka.publisher import Outgoing, Publisher, PublishObserver

pytestmark = pytest.mark.unit


class FakeBroker:
    """Records each send; acks resolve only when the test says so."""

    def __init__(self, fail_enqueue_at: int | None = None) -> None:
        self.sent: list[dict[str, Any]] = []
        self.acks: list[asyncio.Future[None]] = []
        self.fail_enqueue_at = fail_enqueue_at

    async def publish(self, body: bytes, *, topic: str, key: bytes | None, headers: dict[str, str],
                      correlation_id: str | None, no_confirm: bool = False) -> Any:
        if self.fail_enqueue_at == len(self.sent):
            self.sent.append({"topic": topic, "failed": True})
            raise RuntimeError("buffer full")
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.sent.append({"topic": topic, "key": key, "id": headers["ce_id"], "no_confirm": no_confirm})
        self.acks.append(ack)
        if no_confirm:
            return ack
        return await ack


class Counting(PublishObserver):
    def __init__(self) -> None:
        self.topics: list[str] = []

    def published(self, topic: str) -> None:
        self.topics.append(topic)


def event(seq: int) -> RunEvent:
    return RunEvent(run_id="r1", session_id="s1", agent_id="a", seq=seq,
                    kind=RunEventKind.RUN_STARTED, at=datetime.now(UTC))


async def test_all_sent_before_any_ack_then_all_awaited() -> None:
    broker, observer = FakeBroker(), Counting()
    publisher = Publisher(broker, source="mindstream/test", topic_prefix="p.", observer=observer)  # type: ignore[arg-type]
    task = asyncio.create_task(publisher.publish_many(
        [Outgoing(RUNS_EVENTS, event(i), message_id=f"m{i}") for i in range(3)]))
    await asyncio.sleep(0)
    assert [s["id"] for s in broker.sent] == ["m0", "m1", "m2"]  # in order, none waited for
    assert all(s["no_confirm"] for s in broker.sent)
    assert not task.done()
    broker.acks[1].set_result(None)
    broker.acks[0].set_result(None)
    await asyncio.sleep(0)
    assert not task.done()  # still waiting for the last ack
    broker.acks[2].set_exception(RuntimeError("not enough replicas"))
    results = await task
    assert results[:2] == [None, None]
    assert isinstance(results[2], RuntimeError)
    assert observer.topics == ["p.mindstream.runs.events.v1"] * 2


async def test_a_refused_send_is_reported_and_the_rest_still_go() -> None:
    broker = FakeBroker(fail_enqueue_at=0)
    publisher = Publisher(broker, source="mindstream/test")  # type: ignore[arg-type]
    task = asyncio.create_task(publisher.publish_many(
        [Outgoing(RUNS_EVENTS, event(0)), Outgoing(RUNS_EVENTS, event(1), message_id="b")]))
    await asyncio.sleep(0)
    broker.acks[0].set_result(None)
    first, second = await task
    assert isinstance(first, RuntimeError) and second is None


async def test_wrong_message_for_the_topic_is_an_error_result() -> None:
    from schemas.topics import RUNS_COMPLETED

    publisher = Publisher(FakeBroker(), source="mindstream/test")  # type: ignore[arg-type]
    (result,) = await publisher.publish_many([Outgoing(RUNS_COMPLETED, event(0))])
    assert isinstance(result, TypeError)


async def test_publish_still_waits_for_its_ack() -> None:
    broker = FakeBroker()
    publisher = Publisher(broker, source="mindstream/test")  # type: ignore[arg-type]
    task = asyncio.create_task(publisher.publish(RUNS_EVENTS, event(0), message_id="x"))
    await asyncio.sleep(0)
    assert broker.sent[0]["no_confirm"] is False and not task.done()
    broker.acks[0].set_result(None)
    envelope = await task
    assert envelope.id == "x"
