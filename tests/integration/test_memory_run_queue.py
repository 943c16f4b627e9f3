"""A session's runs start one at a time, in order, on real Kafka and a MongoDB-wire server.

The service-level tests publish what clients and reasoning publish and read
``runs.ready``; the queue-level tests drive :class:`Sequencer` over the real
``run_queue`` collection, where crashes and races are easy to stage.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import AutoReconnect

from schemas.agents import AgentDefinition, Limits, ModelSettings
from schemas.common import Actor, ActorKind
from schemas.envelope import Envelope
from schemas.runs import RunCommand, RunCommandKind, RunCompleted, RunRequested, RunStatus
from schemas.topics import RUNS_COMMANDS, RUNS_COMPLETED, RUNS_REQUESTED
from services.memory.run_queue import RunQueue, Sequencer, SlotState
from services.memory.settings import MemoryServiceSettings
from shared.mongo import Doc
from tests.integration.memory_harness import Harness, Reader, completed, requested, rid
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

MakeHarness = Callable[..., Awaitable[Harness]]


def _history(ready: object) -> list[str]:
    return [str(m.content) for m in ready.context.history]  # type: ignore[attr-defined]


async def _slot_state(h: Harness, run_id: str) -> SlotState | None:
    slot = await RunQueue(h.app.runtime.db).slot_of(run_id)
    return slot.state if slot else None


async def _queued(h: Harness, run_id: str) -> None:
    async def waiting() -> bool:
        return await _slot_state(h, run_id) is SlotState.WAITING

    await eventually(waiting, what=f"run {run_id} queued")


# -- through the service ---------------------------------------------------------------


async def test_next_run_waits_for_the_previous_one_and_sees_its_turn(
    make_harness: MakeHarness,
) -> None:
    h = await make_harness()
    user, session = rid("u"), rid("s")
    first, second, third = (requested(session, user, f"Question {i}?") for i in range(3))
    ready_first = await h.ready_for(first)
    assert _history(ready_first) == []
    await h.publish(RUNS_REQUESTED, second)
    await h.publish(RUNS_REQUESTED, third)
    await _queued(h, second.run_id)  # memory has seen it, and holds it
    await _queued(h, third.run_id)

    await h.publish(RUNS_COMPLETED, completed(session, user, "Question 0?", "Answer 0.",
                                              run_id=first.run_id))
    [ready_second] = await h.ready.wait_for(lambda m: m.run_id == second.run_id)
    assert _history(ready_second) == ["Question 0?", "Answer 0."]
    assert await _slot_state(h, third.run_id) is SlotState.WAITING  # still behind the second

    await h.publish(RUNS_COMPLETED, completed(session, user, "Question 1?", "Answer 1.",
                                              run_id=second.run_id))
    [ready_third] = await h.ready.wait_for(lambda m: m.run_id == third.run_id)
    assert _history(ready_third)[-2:] == ["Question 1?", "Answer 1."]
    # Every ready went out once (a duplicate would show as a second match).
    assert len([m for _, m in h.ready.seen if m.run_id in {second.run_id, third.run_id}]) == 2


async def test_a_failed_or_cancelled_run_frees_its_session_too(make_harness: MakeHarness) -> None:
    h = await make_harness()
    user, session = rid("u"), rid("s")
    first, second = requested(session, user, "Do it."), requested(session, user, "Again.")
    await h.ready_for(first)
    await h.publish(RUNS_REQUESTED, second)
    await _queued(h, second.run_id)
    await h.publish(RUNS_COMPLETED, RunCompleted(
        run_id=first.run_id, session_id=session, agent_id="assistant", user_id=user,
        status=RunStatus.CANCELLED, error="cancelled by op-1", completed_at=datetime.now(UTC)))
    [ready] = await h.ready.wait_for(lambda m: m.run_id == second.run_id)
    assert _history(ready) == []  # a cancelled run leaves no turn


async def test_a_run_that_never_ends_holds_its_session_only_past_its_deadline(
    make_harness: MakeHarness,
) -> None:
    agent = AgentDefinition(id="quick", version=1, instructions="Be quick.",
                            model=ModelSettings(name="scripted"),
                            limits=Limits(deadline_seconds=1))
    h = await make_harness(
        MemoryServiceSettings(consumer_concurrency=1, run_queue_grace_s=0.5,
                              run_queue_sweep_interval_s=0.1),
        agents=(agent,))
    user, session = rid("u"), rid("s")
    lost = requested(session, user, "Lost?", agent="quick")
    nxt = requested(session, user, "Next.", agent="quick")
    await h.ready_for(lost)  # ...and no completion ever comes
    started = asyncio.get_running_loop().time()
    await h.publish(RUNS_REQUESTED, nxt)
    await h.ready.wait_for(lambda m: m.run_id == nxt.run_id, timeout_s=30)
    assert asyncio.get_running_loop().time() - started >= 1.0  # not before the deadline
    assert await _slot_state(h, lost.run_id) is SlotState.DONE  # passed over, counted abandoned


# -- the queue itself ------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class Starts:
    """The admit callback: records what was started; can fail like a crash before publish."""

    def __init__(self) -> None:
        self.runs: list[str] = []
        self.fail_next = False

    async def __call__(self, request: RunRequested, envelope: Envelope | None) -> None:
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("broker unreachable")
        self.runs.append(request.run_id)


def _sequencer(db: AsyncDatabase[Doc], starts: Starts, clock: Clock,
               allowed_s: float = 300, queue: RunQueue | None = None) -> Sequencer:
    return Sequencer(queue or RunQueue(db), starts, allowed=lambda _r: timedelta(seconds=allowed_s),
                     clock=clock)


async def test_replays_and_a_crash_before_publishing_lose_nothing_and_start_nothing_twice(
    mongo_db: AsyncDatabase[Doc],
) -> None:
    starts, clock = Starts(), Clock()
    seq = _sequencer(mongo_db, starts, clock)
    session = rid("s")
    a, b = requested(session, "u", "a"), requested(session, "u", "b")
    assert await seq.requested(a, None)
    assert not await seq.requested(b, None)
    assert not await seq.requested(b, None)  # a replayed request still waits, in its place
    assert starts.runs == [a.run_id]

    starts.fail_next = True  # a crash between admitting b and publishing its ready
    with pytest.raises(ConnectionError):
        await seq.ended(a.run_id)
    await seq.ended(a.run_id)  # the redelivered completion publishes it
    assert starts.runs == [a.run_id, b.run_id]
    assert await seq.requested(b, None)  # replay of a started run: the same ready again
    assert starts.runs == [a.run_id, b.run_id, b.run_id]
    await seq.ended(b.run_id)
    assert not await seq.requested(a, None)  # replay of an ended run: nothing
    c = requested(session, "u", "c")
    assert await seq.requested(c, None)  # the session is free again
    assert starts.runs[-1] == c.run_id


async def test_a_stale_predecessor_is_passed_by_the_sweeper(mongo_db: AsyncDatabase[Doc]) -> None:
    starts, clock = Starts(), Clock()
    seq = _sequencer(mongo_db, starts, clock, allowed_s=60)
    session = rid("s")
    a, b, c = (requested(session, "u", x) for x in "abc")
    for r in (a, b, c):
        await seq.requested(r, None)
    assert await seq.sweep() == 0
    clock.now += timedelta(seconds=61)
    assert await seq.sweep() == 1  # b starts; c waits for b, which is not stale yet
    assert starts.runs == [a.run_id, b.run_id]
    await seq.ended(a.run_id)  # the lost run ends after all: nothing new starts
    assert set(starts.runs) == {a.run_id, b.run_id}  # (b's ready again: same id, dropped)
    await seq.ended(b.run_id)
    assert starts.runs[-1] == c.run_id


async def test_concurrent_requests_and_completions_start_each_run_once_in_session_order(
    mongo_db: AsyncDatabase[Doc],
) -> None:
    """Requests of a session arrive in order (one partition) while completions of
    earlier runs arrive at the same time from another consumer (another replica)."""
    clock = Clock()
    started: dict[str, list[str]] = {}
    runs_by_id: dict[str, RunRequested] = {}
    ends: list[asyncio.Task[None]] = []
    seq: Sequencer

    async def start(request: RunRequested, _env: Envelope | None) -> None:
        started.setdefault(request.session_id, []).append(request.run_id)

        async def finish() -> None:  # the run ends a moment later, on "another replica"
            await asyncio.sleep(random.uniform(0, 0.02))
            await seq.ended(request.run_id)

        ends.append(asyncio.create_task(finish()))

    seq = Sequencer(RunQueue(mongo_db), start, allowed=lambda _r: timedelta(minutes=5),
                    clock=clock)
    sessions = {rid("s"): [requested("x", "u", str(i)) for i in range(5)] for _ in range(8)}
    for session, reqs in sessions.items():
        for i, r in enumerate(reqs):
            reqs[i] = r.model_copy(update={"session_id": session})
            runs_by_id[reqs[i].run_id] = reqs[i]

    async def client(reqs: list[RunRequested]) -> None:
        for r in reqs:
            await seq.requested(r, None)
            await asyncio.sleep(random.uniform(0, 0.01))

    await asyncio.gather(*(client(reqs) for reqs in sessions.values()))
    async with asyncio.timeout(60):
        drained = -1
        while drained < len(ends):  # every start schedules an end: drain until none is new
            drained = len(ends)
            await asyncio.gather(*ends)
    for session, reqs in sessions.items():
        order = list(dict.fromkeys(started[session]))  # first start of each run
        assert order == [r.run_id for r in reqs], session


async def test_a_run_cancelled_while_queued_is_reported_and_never_starts(
    make_harness: MakeHarness,
) -> None:
    h = await make_harness()
    completions = Reader(h.kafka, RUNS_COMPLETED)
    await completions.start()
    try:
        user, session = rid("u"), rid("s")
        first, second, third = (requested(session, user, f"Q{i}") for i in range(3))
        await h.ready_for(first)
        for r in (second, third):
            await h.publish(RUNS_REQUESTED, r)
            await _queued(h, r.run_id)
        await h.publish(RUNS_COMMANDS, RunCommand(
            command_id=rid("cmd"), run_id=second.run_id, session_id=session,
            command=RunCommandKind.CANCEL, actor=Actor(kind=ActorKind.USER, id="op-1"),
            reason="changed my mind", issued_at=datetime.now(UTC)))
        [cancelled] = await completions.wait_for(lambda m: m.run_id == second.run_id)
        assert cancelled.status is RunStatus.CANCELLED
        assert cancelled.error and "op-1" in cancelled.error and "changed my mind" in cancelled.error
        assert await _slot_state(h, third.run_id) is SlotState.WAITING  # first still runs

        await h.publish(RUNS_COMPLETED, completed(session, user, "Q0", "A0", run_id=first.run_id))
        [ready_third] = await h.ready.wait_for(lambda m: m.run_id == third.run_id)
        assert _history(ready_third) == ["Q0", "A0"]
        assert not [m for _, m in h.ready.seen if m.run_id == second.run_id]
        await h.audit.wait_for(lambda e: e.action == "run.cancelled"
                               and e.target.id == second.run_id)
    finally:
        await completions.stop()


async def test_a_request_behind_a_cancelled_run_waits_for_the_run_ahead_of_both(
    mongo_db: AsyncDatabase[Doc],
) -> None:
    starts, clock = Starts(), Clock()
    seq = _sequencer(mongo_db, starts, clock)
    session = rid("s")
    a, b, c = (requested(session, "u", x) for x in "abc")
    await seq.requested(a, None)
    await seq.requested(b, None)
    assert await seq.cancel(b.run_id) is not None
    assert await seq.cancel(b.run_id) is not None  # a redelivered command: reported again
    assert not await seq.requested(b, None)  # a replayed request of a cancelled run: nothing
    await seq.ended(b.run_id)  # its cancelled RunCompleted comes back: frees nothing
    assert not await seq.requested(c, None)  # a is still running
    await seq.ended(a.run_id)
    assert starts.runs == [a.run_id, c.run_id]
    assert await seq.cancel(c.run_id) is None  # started: reasoning cancels it


class _Flaky:
    """A collection whose next ``method`` call fails with AutoReconnect, after taking
    effect when ``applied`` (the reply was lost) -- a database going away mid-call."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.fail: tuple[str, bool] | None = None

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if self.fail is None or self.fail[0] != name:
            return attr
        _, applied = self.fail

        async def failing(*args: Any, **kwargs: Any) -> Any:
            self.fail = None
            if applied:
                await attr(*args, **kwargs)
            raise AutoReconnect("connection closed")

        return failing


@pytest.mark.parametrize("collection", ["_coll", "_runs"])
@pytest.mark.parametrize("method", ["insert_one", "update_one"])
@pytest.mark.parametrize("applied", [True, False], ids=["lost-reply", "not-applied"])
async def test_a_request_retried_after_a_database_error_mid_placement_keeps_its_turn(
    mongo_db: AsyncDatabase[Doc], collection: str, method: str, applied: bool,
) -> None:
    """The pipeline retries a handler that failed on the database; whichever write of
    the placement failed (the slot, its link, the session head), the retry must find
    the run's own slot: not queue the run behind itself until its deadline passes."""
    starts, clock = Starts(), Clock()
    queue = RunQueue(mongo_db)
    seq = _sequencer(mongo_db, starts, clock, queue=queue)
    flaky = _Flaky(getattr(queue, collection))  # between the queue and its collection
    setattr(queue, collection, flaky)
    session = rid("s")
    a, b, c = (requested(session, "u", x) for x in "abc")
    assert await seq.requested(a, None)
    flaky.fail = (method, applied)
    try:
        await seq.requested(b, None)
    except AutoReconnect:
        pass
    assert not await seq.requested(b, None)  # the retry: b waits for a, in its one slot
    await seq.ended(a.run_id)
    assert starts.runs == [a.run_id, b.run_id]
    assert not await seq.requested(c, None)
    await seq.ended(b.run_id)
    assert starts.runs == [a.run_id, b.run_id, c.run_id]

    d = requested(session, "u", "d")  # and when the session is free: starts at once
    await seq.ended(c.run_id)
    flaky.fail = (method, applied)
    try:
        await seq.requested(d, None)
    except AutoReconnect:
        pass
    assert await seq.requested(d, None)
    assert starts.runs[-1] == d.run_id


async def test_a_copy_of_a_request_that_missed_the_link_finds_the_runs_slot(
    mongo_db: AsyncDatabase[Doc],
) -> None:
    """Two consumers handle the same request at once (one lost the partition in a
    rebalance mid-handler). The later copy read "no link" just before the first copy
    linked its slot and moved the head: it must take that slot, not queue behind it."""
    starts, clock = Starts(), Clock()
    queue = RunQueue(mongo_db)
    seq = _sequencer(mongo_db, starts, clock, queue=queue)
    session = rid("s")
    a, b = requested(session, "u", "a"), requested(session, "u", "b")
    assert await seq.requested(a, None)
    real_find = queue.find

    async def missed_link(request: RunRequested) -> tuple[Any, int]:
        _, _ = await real_find(request)
        head = await mongo_db.run_queue.find_one({"_id": f"head:{session}"})
        assert head is not None
        return None, int(head["next"])

    queue.find = missed_link  # type: ignore[method-assign]
    assert await seq.requested(a, None)  # the same run, started again (same ready id)
    queue.find = real_find  # type: ignore[method-assign]
    assert starts.runs == [a.run_id, a.run_id]
    assert await mongo_db.run_queue.find_one({"_id": f"{session}#1"}) is None
    assert not await seq.requested(b, None)
    await seq.ended(a.run_id)
    assert starts.runs[-1] == b.run_id
