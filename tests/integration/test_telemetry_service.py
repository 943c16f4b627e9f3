"""The telemetry service on real Kafka and a MongoDB-wire server, in process.

Messages are published as reasoning and tools would publish them; the test
then reads ``/metrics`` over HTTP and the rollups in MongoDB. Consumer lag
and dead letters are measured from the broker against a consumer group the
test controls.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from schemas.base import Message
from schemas.common import Usage
from schemas.envelope import deterministic_id
from schemas.runs import (
    RunCompleted,
    RunEvent,
    RunEventKind,
    RunMetrics,
    RunRequested,
    RunStatus,
)
from schemas.tools import ToolError, ToolErrorCode, ToolResult
from schemas.topics import RUNS_COMPLETED, RUNS_EVENTS, RUNS_REQUESTED, TOOLS_RESULTS, TopicSpec
from services.telemetry.app import TelemetryApp, build_app
from services.telemetry.rollups import read_rollups
from services.telemetry.settings import TelemetrySettings
from services.telemetry.store import ROLLUPS, TTL_INDEX
from shared.kafka.broker import make_broker
from shared.kafka.publisher import Publisher
from shared.mongo import sweep_expired
from shared.settings import KafkaSettings, MongoSettings
from tests.support.kafka import collect
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

Sample = tuple[str, dict[str, str], float]


class Scenario:
    """A running telemetry service plus a publisher speaking for the other services."""

    def __init__(self, app: TelemetryApp, kafka: KafkaSettings, publisher: Publisher) -> None:
        self.app = app
        self.kafka = kafka
        self.publisher = publisher

    async def publish(self, spec: TopicSpec, message: Message, message_id: str | None = None,
                      ) -> None:
        await self.publisher.publish(spec, message, message_id=message_id)

    async def scrape(self) -> list[Sample]:
        url = f"http://127.0.0.1:{self.app.runtime.health.port}/metrics"
        async with httpx.AsyncClient(timeout=5.0) as client:
            response = await client.get(url)
        response.raise_for_status()
        return [(s.name, dict(s.labels), s.value)
                for family in text_string_to_metric_families(response.text)
                for s in family.samples]

    async def value(self, name: str, **labels: str) -> float:
        return _value(await self.scrape(), name, **labels)

    async def until(self, check: Callable[[list[Sample]], bool], what: str,
                    timeout_s: float = 30.0) -> list[Sample]:
        """Scrape until ``check`` holds (the consumers work asynchronously)."""
        async def scraped() -> list[Sample] | None:
            samples = await self.scrape()
            return samples if check(samples) else None

        return await eventually(scraped, what=what, timeout_s=timeout_s)


def _value(samples: list[Sample], name: str, **labels: str) -> float:
    return sum(v for n, lab, v in samples
               if n == name and all(lab.get(k) == want for k, want in labels.items()))


def _handled(samples: list[Sample], spec: TopicSpec) -> float:
    """Messages whose handler returned (duplicates dropped by the ledger are not handled)."""
    return _value(samples, "mindstream_handler_duration_seconds_count", topic=spec.name)


@pytest.fixture
async def scenario(topics: KafkaSettings, mongo_settings: MongoSettings, mongo_db: Any,
                   ) -> AsyncIterator[Scenario]:
    settings = TelemetrySettings(
        prices={"gpt-x": {"prompt_per_1k": 1.0, "completion_per_1k": 2.0}},
        tool_allowlist=["calculator"],
        lag_groups=[f"{topics.topic_prefix}watched"],
        lag_poll_interval_s=0.2,
    )
    app = build_app(settings, topics, mongo_settings, http_port=0)
    broker = make_broker(topics, "telemetry-test-producer")
    publisher = Publisher(broker, source="mindstream/reasoning", topic_prefix=topics.topic_prefix)
    await broker.start()
    try:
        async with app.runtime:
            yield Scenario(app, topics, publisher)
    finally:
        await broker.stop()


def _event(run: str, agent: str, seq: int, kind: RunEventKind, at: datetime, **fields: Any,
           ) -> RunEvent:
    return RunEvent(run_id=run, session_id=f"sess-{run}", agent_id=agent, seq=seq, kind=kind,
                    at=at, **fields)


async def test_metrics_and_rollups_follow_what_happened(scenario: Scenario, mongo_db: Any) -> None:
    run_a, run_b = f"run-{uuid.uuid4().hex[:12]}", f"run-{uuid.uuid4().hex[:12]}"
    user, call_ok, call_bad = "user-7f3a", f"call-{uuid.uuid4().hex[:8]}", "call-zz9"
    minute = datetime.now(UTC).replace(second=0, microsecond=0)
    t0 = minute + timedelta(seconds=5)

    async def events(run: str, agent: str, *items: tuple[RunEventKind, datetime, dict[str, Any]],
                     ) -> None:
        for seq, (kind, at, fields) in enumerate(items):
            await scenario.publish(RUNS_EVENTS, _event(run, agent, seq, kind, at, **fields),
                                   deterministic_id(run, "event", str(seq)))

    await events(
        run_a, "support@1",
        (RunEventKind.RUN_STARTED, t0, {"data": {"context_ms": 12}}),
        (RunEventKind.MODEL_COMPLETED, t0 + timedelta(seconds=1),
         {"usage": Usage(prompt_tokens=1000, completion_tokens=250),
          "data": {"model": "gpt-x", "latency_ms": 800, "ttft_ms": 150}}),
        (RunEventKind.TOOL_REQUESTED, t0 + timedelta(seconds=1),
         {"call_id": call_ok, "tool": "calculator"}),
        (RunEventKind.TOOL_COMPLETED, t0 + timedelta(seconds=2),
         {"call_id": call_ok, "tool": "calculator"}),
        (RunEventKind.RUN_COMPLETED, t0 + timedelta(seconds=3), {}),
    )
    await events(run_b, "support", (RunEventKind.RUN_STARTED, t0, {}))
    await scenario.publish(TOOLS_RESULTS, ToolResult(
        call_id=call_ok, run_id=run_a, session_id=f"sess-{run_a}", tool="calculator", ok=True,
        content=42, duration_ms=40))
    await scenario.publish(TOOLS_RESULTS, ToolResult(
        call_id=call_bad, run_id=run_b, session_id=f"sess-{run_b}", tool="http_fetch", ok=False,
        error=ToolError(code=ToolErrorCode.TIMEOUT, message="slow"), duration_ms=3000))
    done_a = RunCompleted(
        run_id=run_a, session_id=f"sess-{run_a}", agent_id="support@1", user_id=user,
        status=RunStatus.COMPLETED, output="42", usage=Usage(prompt_tokens=1000,
                                                             completion_tokens=250),
        metrics=RunMetrics(model_calls=1, tool_calls=1, duration_ms=3000),
        completed_at=t0 + timedelta(seconds=3))
    done_b = RunCompleted(
        run_id=run_b, session_id=f"sess-{run_b}", agent_id="support", user_id=user,
        status=RunStatus.FAILED, error="limit: max_model_calls=3 reached",
        completed_at=t0 + timedelta(seconds=4))
    # B's end waits for its start, so its duration comes from run.started → completed_at.
    await scenario.until(lambda s: _handled(s, RUNS_EVENTS) >= 6, "events handled")
    await scenario.publish(RUNS_COMPLETED, done_a, deterministic_id(run_a, "completed"))
    await scenario.publish(RUNS_COMPLETED, done_b, deterministic_id(run_b, "completed"))
    await scenario.publish(RUNS_COMPLETED, done_a, deterministic_id(run_a, "completed"))  # dup

    samples = await scenario.until(
        lambda s: _handled(s, RUNS_COMPLETED) >= 2 and _handled(s, TOOLS_RESULTS) >= 2
        and _value(s, "mindstream_messages_consumed_total", topic=RUNS_COMPLETED.name) >= 3,
        "runs and tool results handled")

    def v(name: str, **labels: str) -> float:
        return _value(samples, name, **labels)

    assert v("mindstream_runs_total", agent="support", outcome="completed",
             reason_class="none") == 1
    assert v("mindstream_runs_total", agent="support", outcome="failed",
             reason_class="limit") == 1
    assert v("mindstream_runs_total") == 2  # the duplicate message was dropped
    assert v("mindstream_run_end_to_end_seconds_count", agent="support") == 2
    assert v("mindstream_run_end_to_end_seconds_sum", agent="support") == pytest.approx(7.0)
    assert v("mindstream_model_tokens_total", agent="support", model="gpt-x",
             direction="prompt") == 1000
    assert v("mindstream_model_tokens_total", direction="completion") == 250
    assert v("mindstream_model_cost_total", agent="support", model="gpt-x") == pytest.approx(1.5)
    assert v("mindstream_tool_results_total", tool="calculator", outcome="ok") == 1
    assert v("mindstream_tool_results_total", tool="other", outcome="timeout") == 1
    for stage, count in (("model_call", 1), ("time_to_first_token", 1), ("tool_call", 2),
                         ("context_assembly", 1), ("tool_queue", 1), ("result_queue", 1)):
        assert v("mindstream_stage_duration_seconds_count", stage=stage) == count, stage
    assert v("mindstream_stage_duration_seconds_count", stage="telemetry_ingest") >= 10

    ids = {run_a, run_b, user, call_ok, call_bad, f"sess-{run_a}", f"sess-{run_b}"}
    leaked = {val for _, labels, _ in samples for val in labels.values()
              if any(i in val for i in ids)}
    assert not leaked

    # A replay under a new message id passes the ledger; the rollup still counts A once.
    await scenario.publish(RUNS_COMPLETED, done_a, message_id=str(uuid.uuid4()))
    await scenario.until(lambda s: _handled(s, RUNS_COMPLETED) >= 3, "replay handled")
    [rollup] = await read_rollups(mongo_db, agent="support", since=minute)
    assert rollup["minute"] == minute
    assert rollup["runs"] == 2
    assert rollup["outcomes"] == {"completed": 1, "failed": 1}
    assert rollup["reasons"] == {"limit": 1}
    assert (rollup["prompt_tokens"], rollup["completion_tokens"]) == (1000, 250)
    assert rollup["cost"] == pytest.approx(1.5)
    assert rollup["latency_ms"] == {"p50": 3500.0, "p95": pytest.approx(3950.0),
                                    "p99": pytest.approx(3990.0)}
    assert "run_ids" not in rollup
    assert await read_rollups(mongo_db, agent="nobody") == []
    assert await read_rollups(mongo_db, since=minute + timedelta(minutes=1)) == []
    await _retention_holds(scenario, mongo_db)


async def _retention_holds(scenario: Scenario, mongo_db: Any) -> None:
    """A TTL index where the server has them; else the sweeper deletes expired rollups.

    (Part of the test above: a second service start costs seconds of group joins.)
    """
    indexes = await mongo_db[ROLLUPS].index_information()
    if "ttl_expires_at" in indexes:
        assert indexes["ttl_expires_at"]["expireAfterSeconds"] == 0
    else:  # FerretDB has no TTL indexes: the runtime sweeps what the index would expire
        assert "ttl_expires_at" not in indexes
    old = datetime.now(UTC) - timedelta(days=1)
    await mongo_db[ROLLUPS].insert_one({"_id": "gone|x", "agent": "gone", "minute": old,
                                        "expires_at": old, "runs": 1})
    await mongo_db[ROLLUPS].insert_one({"_id": "kept|x", "agent": "kept", "minute": old,
                                        "expires_at": old + timedelta(days=30), "runs": 1})
    assert await sweep_expired(mongo_db, ROLLUPS, TTL_INDEX) == 1
    assert "gone" not in {r["agent"] for r in await read_rollups(mongo_db)}
    assert [r["agent"] for r in await read_rollups(mongo_db, agent="kept")] == ["kept"]


async def _commit(kafka: KafkaSettings, group: str, offsets: dict[TopicPartition, int]) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit(offsets)
    finally:
        await consumer.stop()


async def _polled(scenario: Scenario, action: Callable[[], Awaitable[None]] | None = None,
                  ) -> list[Sample]:
    """Samples after a broker poll that began after ``action`` finished."""
    if action is not None:
        await action()
    await scenario.app.monitor.next_poll()  # a poll may be under way: wait for a fresh one
    await scenario.app.monitor.next_poll()
    return await scenario.scrape()


async def test_lag_rises_while_a_group_stands_still_and_falls_when_it_commits(
        scenario: Scenario) -> None:
    kafka = scenario.kafka
    group = f"{kafka.topic_prefix}watched"
    topic = RUNS_REQUESTED.physical(kafka.topic_prefix)
    partitions = [TopicPartition(topic, p) for p in range(3)]
    await _commit(kafka, group, dict.fromkeys(partitions, 0))
    n = 7
    for i in range(n):
        await scenario.publish(RUNS_REQUESTED, RunRequested(
            run_id=f"r-{i}-{uuid.uuid4().hex[:6]}", agent_id="support", session_id=f"s-{i}",
            user_id="u-1", input="hello"))

    samples = await _polled(scenario)
    labels = {"group": group, "topic": RUNS_REQUESTED.name}
    assert _value(samples, "mindstream_consumer_lag", **labels) == n
    assert 1 <= _value(samples, "mindstream_consumer_lag_max", **labels) <= n

    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, group_id=None)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    samples = await _polled(scenario, lambda: _commit(kafka, group, dict(ends)))
    assert _value(samples, "mindstream_consumer_lag", **labels) == 0
    assert _value(samples, "mindstream_telemetry_broker_polls_total", result="ok") >= 2


async def test_dead_letters_are_counted_from_the_dlq_topic(scenario: Scenario) -> None:
    kafka = scenario.kafka
    events_topic = RUNS_EVENTS.physical(kafka.topic_prefix)
    await scenario.publisher.send_raw(events_topic, b"not json", key=b"s-1", headers=[])
    await collect(kafka.bootstrap_servers, events_topic + ".dlq", 1)
    samples = await _polled(scenario)
    assert _value(samples, "mindstream_dead_letter_messages", topic=RUNS_EVENTS.name) == 1
    assert _value(samples, "mindstream_dead_letter_messages", topic=TOOLS_RESULTS.name) == 0
    assert _value(samples, "mindstream_dead_lettered_total", topic=RUNS_EVENTS.name,
                  reason_kind="contract") == 1
