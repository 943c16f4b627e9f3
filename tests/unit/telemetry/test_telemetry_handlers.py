"""The handlers against an in-memory registry: what each message adds to which series."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.base import Message
from schemas.common import Usage
from schemas.envelope import Envelope
from schemas.runs import RunCompleted, RunEvent, RunEventKind, RunMetrics, RunStatus
from schemas.tools import ToolError, ToolErrorCode, ToolResult
from services.telemetry.handlers import Telemetry
from services.telemetry.labels import BoundedLabel
from services.telemetry.pricing import ModelPrice, PriceTable
from services.telemetry.rollups import RunSummary
from shared.kafka.consumer import Delivery
from shared.observability.metrics import ServiceMetrics

pytestmark = pytest.mark.unit

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


class FakeRollups:
    def __init__(self, fail_times: int = 0) -> None:
        self.recorded: list[RunSummary] = []
        self._fail = fail_times

    async def record(self, run: RunSummary) -> bool:
        if self._fail:
            self._fail -= 1
            raise ConnectionError("mongo away")
        self.recorded.append(run)
        return True


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def deliver(message: Message, at: datetime) -> Delivery[Any]:
    envelope = Envelope.new(message, source="mindstream/test", time=at)
    return Delivery(message, envelope, "topic", 0, 0)


def event(kind: RunEventKind, at: datetime, seq: int = 0, **fields: Any) -> RunEvent:
    return RunEvent(run_id=fields.pop("run_id", "run-1"), session_id="s-1",
                    agent_id=fields.pop("agent_id", "support@2"), seq=seq, kind=kind, at=at,
                    **fields)


def completed(status: RunStatus = RunStatus.COMPLETED, duration_ms: int = 0, **fields: Any,
              ) -> RunCompleted:
    return RunCompleted(
        run_id=fields.pop("run_id", "run-1"), session_id="s-1",
        agent_id=fields.pop("agent_id", "support@2"),
        user_id="user-1", status=status, completed_at=fields.pop("at", T0 + timedelta(seconds=3)),
        usage=Usage(prompt_tokens=100, completion_tokens=50),
        metrics=RunMetrics(duration_ms=duration_ms),
        error=None if status is RunStatus.COMPLETED else fields.pop("error", "limit: max"),
        **fields)


@pytest.fixture
def metrics() -> ServiceMetrics:
    return ServiceMetrics("telemetry")


@pytest.fixture
def clock() -> Clock:
    return Clock(T0 + timedelta(seconds=10))


@pytest.fixture
def rollups() -> FakeRollups:
    return FakeRollups()


@pytest.fixture
def telemetry(metrics: ServiceMetrics, rollups: FakeRollups, clock: Clock) -> Telemetry:
    prices = PriceTable({"gpt-x": ModelPrice(prompt_per_1k=1.0, completion_per_1k=2.0)})
    return Telemetry(metrics, prices, rollups, agents=BoundedLabel(2),  # type: ignore[arg-type]
                     tools=BoundedLabel(10, ["calculator"]), cache_size=100, clock=clock)


def value(metrics: ServiceMetrics, name: str, **labels: str) -> float:
    found = metrics.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def stage_count(metrics: ServiceMetrics, stage: str) -> float:
    return value(metrics, "mindstream_stage_duration_seconds_count", stage=stage)


def stage_sum(metrics: ServiceMetrics, stage: str) -> float:
    return value(metrics, "mindstream_stage_duration_seconds_sum", stage=stage)


async def test_run_lifecycle_counts_latency_tokens_and_cost(
        telemetry: Telemetry, metrics: ServiceMetrics, rollups: FakeRollups) -> None:
    await telemetry.on_run_event(deliver(event(
        RunEventKind.RUN_STARTED, T0, data={"context_ms": 40, "queue_ms": 5}), T0))
    await telemetry.on_run_event(deliver(event(
        RunEventKind.MODEL_COMPLETED, T0 + timedelta(seconds=1), seq=1,
        usage=Usage(prompt_tokens=1000, completion_tokens=500),
        data={"model": "gpt-x", "latency_ms": 900, "ttft_ms": 120}), T0))
    await telemetry.on_run_completed(deliver(completed(), T0 + timedelta(seconds=3)))

    assert value(metrics, "mindstream_runs_total", agent="support", outcome="completed",
                 reason_class="none") == 1
    assert value(metrics, "mindstream_run_end_to_end_seconds_sum", agent="support",
                 outcome="completed") == pytest.approx(3.0)
    assert value(metrics, "mindstream_model_tokens_total", agent="support", model="gpt-x",
                 direction="prompt") == 1000
    assert value(metrics, "mindstream_model_tokens_total", agent="support", model="gpt-x",
                 direction="completion") == 500
    assert value(metrics, "mindstream_model_cost_total", agent="support",
                 model="gpt-x") == pytest.approx(2.0)
    assert stage_sum(metrics, "model_call") == pytest.approx(0.9)
    assert stage_sum(metrics, "time_to_first_token") == pytest.approx(0.12)
    assert stage_sum(metrics, "context_assembly") == pytest.approx(0.04)
    assert stage_sum(metrics, "run_queue") == pytest.approx(0.005)
    assert stage_count(metrics, "telemetry_ingest") == 3
    [summary] = rollups.recorded
    assert (summary.run_id, summary.agent, summary.duration_ms) == ("run-1", "support", 3000.0)
    assert summary.cost == pytest.approx(2.0)


async def test_run_duration_prefers_the_runs_own_clock(
        telemetry: Telemetry, metrics: ServiceMetrics, rollups: FakeRollups) -> None:
    await telemetry.on_run_event(deliver(event(RunEventKind.RUN_STARTED, T0), T0))
    await telemetry.on_run_completed(deliver(completed(duration_ms=1500), T0))
    assert value(metrics, "mindstream_run_end_to_end_seconds_sum", agent="support",
                 outcome="completed") == pytest.approx(1.5)
    assert rollups.recorded[0].duration_ms == 1500.0


async def test_run_without_start_or_duration_counts_without_latency(
        telemetry: Telemetry, metrics: ServiceMetrics, rollups: FakeRollups) -> None:
    await telemetry.on_run_completed(deliver(
        completed(RunStatus.FAILED, error="model circuit open"), T0))
    assert value(metrics, "mindstream_runs_total", agent="support", outcome="failed",
                 reason_class="model_unavailable") == 1
    assert value(metrics, "mindstream_run_end_to_end_seconds_count", agent="support",
                 outcome="failed") == 0
    assert rollups.recorded[0].duration_ms is None
    assert rollups.recorded[0].cost is None


async def test_failed_rollup_write_does_not_count_the_run_twice(
        metrics: ServiceMetrics, clock: Clock) -> None:
    rollups = FakeRollups(fail_times=1)
    telemetry = Telemetry(metrics, PriceTable(), rollups, clock=clock)  # type: ignore[arg-type]
    await telemetry.on_run_event(deliver(event(RunEventKind.RUN_STARTED, T0), T0))
    message = deliver(completed(), T0)
    with pytest.raises(ConnectionError):
        await telemetry.on_run_completed(message)
    await telemetry.on_run_completed(message)  # the pipeline's retry
    assert value(metrics, "mindstream_runs_total", agent="support", outcome="completed",
                 reason_class="none") == 1
    assert rollups.recorded[0].duration_ms == 3000.0


async def test_tool_results_count_by_tool_and_code_with_queues(
        telemetry: Telemetry, metrics: ServiceMetrics) -> None:
    requested = event(RunEventKind.TOOL_REQUESTED, T0, call_id="c-1", tool="calculator")
    result = ToolResult(call_id="c-1", run_id="run-1", session_id="s-1", tool="calculator",
                        ok=True, content=4, duration_ms=200)
    done = event(RunEventKind.TOOL_COMPLETED, T0 + timedelta(seconds=2), call_id="c-1",
                 tool="calculator")
    # The result arrives before the request event (different topics): still paired.
    await telemetry.on_tool_result(deliver(result, T0 + timedelta(milliseconds=1700)))
    await telemetry.on_run_event(deliver(requested, T0))
    await telemetry.on_run_event(deliver(done, T0 + timedelta(seconds=2)))
    failed = ToolResult(call_id="c-2", run_id="run-1", session_id="s-1", tool="http_fetch",
                        ok=False, error=ToolError(code=ToolErrorCode.TIMEOUT, message="slow"),
                        duration_ms=5000)
    await telemetry.on_tool_result(deliver(failed, T0))

    assert value(metrics, "mindstream_tool_results_total", tool="calculator", outcome="ok") == 1
    assert value(metrics, "mindstream_tool_results_total", tool="other", outcome="timeout") == 1
    assert value(metrics, "mindstream_tool_result_duration_seconds_sum",
                 tool="calculator") == pytest.approx(0.2)
    assert stage_sum(metrics, "tool_call") == pytest.approx(5.2)
    assert stage_sum(metrics, "tool_queue") == pytest.approx(1.5)
    assert stage_sum(metrics, "result_queue") == pytest.approx(0.3)
    assert stage_count(metrics, "tool_queue") == 1


async def test_labels_stay_bounded_and_never_carry_ids(
        telemetry: Telemetry, metrics: ServiceMetrics) -> None:
    for i, agent in enumerate(["a1@1", "a2", "a3", "a4"]):
        await telemetry.on_run_completed(deliver(completed(run_id=f"run-{i}", agent_id=agent), T0))
    await telemetry.on_run_event(deliver(event(
        RunEventKind.MODEL_COMPLETED, T0, usage=Usage(prompt_tokens=1),
        data={"model": "0123456789abcdef0123456789abcdef"}), T0))
    outcome = {"outcome": "completed", "reason_class": "none"}
    assert value(metrics, "mindstream_runs_total", agent="a1", **outcome) == 1
    assert value(metrics, "mindstream_runs_total", agent="a2", **outcome) == 1
    assert value(metrics, "mindstream_runs_total", agent="other", **outcome) == 2
    text = "\n".join(
        f"{s.name}{s.labels}" for family in metrics.registry.collect() for s in family.samples)
    for forbidden in ("run-0", "run-1", "user-1", "s-1", "0123456789abcdef"):
        assert forbidden not in text
    assert value(metrics, "mindstream_model_tokens_total", agent="other", model="other",
                 direction="prompt") == 1


async def test_unknown_model_counts_tokens_but_no_cost(
        telemetry: Telemetry, metrics: ServiceMetrics) -> None:
    await telemetry.on_run_event(deliver(event(
        RunEventKind.MODEL_COMPLETED, T0, usage=Usage(prompt_tokens=10, completion_tokens=0),
        data={"model": "mystery", "latency_ms": "fast"}), T0))
    await telemetry.on_run_event(deliver(event(RunEventKind.MODEL_COMPLETED, T0, seq=1), T0))
    assert value(metrics, "mindstream_model_tokens_total", agent="support", model="mystery",
                 direction="prompt") == 10
    assert value(metrics, "mindstream_model_tokens_total", agent="support", model="mystery",
                 direction="completion") == 0
    assert value(metrics, "mindstream_model_cost_total", agent="support", model="mystery") == 0
    assert stage_count(metrics, "model_call") == 0
