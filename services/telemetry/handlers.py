"""What telemetry does with each message: count it, time it, roll it up.

Sources, so nothing is counted twice:

- runs: ``RunCompleted`` (one per run, with status, error, usage, duration);
- tokens and cost: ``model.completed`` events (they name the model);
- tool calls, errors and durations: ``ToolResult`` (the tools service's own
  measure); ``tool.*`` events only time the queues around it.

``RunEvent.data`` keys read (all optional; absent or non-numeric is skipped):

==================  =============  ===================================================
kind                key            meaning
==================  =============  ===================================================
model.completed     model          model name (label, price lookup)
model.completed     latency_ms     model call wall time → stage ``model_call``
model.completed     ttft_ms        time to first token (also ``time_to_first_token_ms``)
run.started         context_ms     context assembly time (also ``context_assembly_ms``)
run.started         queue_ms       RunReady waiting before reasoning took it → ``run_queue``
==================  =============  ===================================================

Queues between services come from times the messages carry: ``tool_queue``
is from ``tool.requested`` to the tool starting (the ToolResult's ``ce_time``
minus its ``duration_ms``), ``result_queue`` from the ToolResult's
``ce_time`` to ``tool.completed``; both pair the two ends by ``call_id``,
whichever arrives first. ``telemetry_ingest`` is each message's ``ce_time``
to its arrival here (how far behind telemetry itself runs).

Start-of-run times, per-run cost and call times are kept in bounded LRU
maps: a run whose start was evicted still counts, it only lacks a duration.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Generic, TypeVar

from schemas.runs import RunCompleted, RunEvent, RunEventKind
from schemas.tools import ToolResult
from services.telemetry import metrics as m
from services.telemetry.classify import classify_reason
from services.telemetry.labels import BoundedLabel, agent_label
from services.telemetry.pricing import PriceTable
from services.telemetry.rollups import RollupStore, RunSummary
from shared.kafka.consumer import Delivery
from shared.observability.metrics import ServiceMetrics

__all__ = ["LruMap", "Telemetry", "number"]

K = TypeVar("K")
V = TypeVar("V")


class LruMap(Generic[K, V]):
    """A dict that forgets its least recently used entries beyond ``capacity``."""

    def __init__(self, capacity: int) -> None:
        self._data: OrderedDict[K, V] = OrderedDict()
        self._capacity = capacity

    def get(self, key: K) -> V | None:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self._capacity:
            self._data.popitem(last=False)

    def pop(self, key: K) -> V | None:
        return self._data.pop(key, None)

    def __len__(self) -> int:
        return len(self._data)


def number(data: Mapping[str, object], *keys: str) -> float | None:
    """The first of ``keys`` holding a finite, non-negative number (bools are not numbers)."""
    for key in keys:
        value = data.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(value) and value >= 0:
            return float(value)
    return None


@dataclass
class _Call:
    requested_at: datetime | None = None
    started_at: datetime | None = None
    result_at: datetime | None = None
    completed_at: datetime | None = None
    tool_queue_seen: bool = False
    result_queue_seen: bool = False


def _seconds(start: datetime, end: datetime) -> float:
    return max(0.0, (end - start).total_seconds())


class Telemetry:
    """The three handlers, sharing label bounds and the correlation maps."""

    def __init__(
        self,
        metrics: ServiceMetrics,
        prices: PriceTable,
        rollups: RollupStore | None = None,
        *,
        agents: BoundedLabel | None = None,
        models: BoundedLabel | None = None,
        tools: BoundedLabel | None = None,
        cache_size: int = 20_000,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._prices = prices
        self._rollups = rollups
        self._agents = agents or BoundedLabel(100)
        self._models = models or BoundedLabel(20, ())
        self._tools = tools or BoundedLabel(50)
        self._clock = clock
        self._started: LruMap[str, datetime] = LruMap(cache_size)
        self._cost: LruMap[str, float] = LruMap(cache_size)
        self._calls: LruMap[str, _Call] = LruMap(cache_size)
        self._run_duration = metrics.histogram(m.RUN_DURATION)
        self._stage = metrics.histogram(m.STAGE_DURATION)
        self._runs = metrics.counter(m.RUNS)
        self._tokens = metrics.counter(m.MODEL_TOKENS)
        self._money = metrics.counter(m.MODEL_COST)
        self._tool_calls = metrics.counter(m.TOOL_RESULTS)
        self._tool_duration = metrics.histogram(m.TOOL_RESULT_DURATION)

    def stage(self, stage: m.Stage, seconds: float) -> None:
        self._stage.observe(seconds, stage=stage.value)

    def _ingested(self, delivery: Delivery[RunEvent] | Delivery[ToolResult]
                  | Delivery[RunCompleted]) -> None:
        self.stage(m.Stage.INGEST, _seconds(delivery.envelope.time, self._clock()))

    # -- runs.events --------------------------------------------------------

    async def on_run_event(self, delivery: Delivery[RunEvent]) -> None:
        self._ingested(delivery)
        event = delivery.message
        data = event.data
        match event.kind:
            case RunEventKind.RUN_STARTED:
                self._started.put(event.run_id, event.at)
                self._observe_ms(m.Stage.CONTEXT_ASSEMBLY,
                                 number(data, "context_ms", "context_assembly_ms"))
                self._observe_ms(m.Stage.RUN_QUEUE, number(data, "queue_ms"))
            case RunEventKind.MODEL_COMPLETED:
                self._model_completed(event)
            case RunEventKind.TOOL_REQUESTED if event.call_id is not None:
                self._call(event.call_id).requested_at = event.at
                self._pair(event.call_id)
            case RunEventKind.TOOL_COMPLETED if event.call_id is not None:
                self._call(event.call_id).completed_at = event.at
                self._pair(event.call_id)
            case _:
                pass

    def _model_completed(self, event: RunEvent) -> None:
        data = event.data
        self._observe_ms(m.Stage.MODEL_CALL, number(data, "latency_ms"))
        self._observe_ms(m.Stage.TIME_TO_FIRST_TOKEN,
                         number(data, "ttft_ms", "time_to_first_token_ms"))
        if event.usage is None:
            return
        raw_model = data.get("model")
        model_name = raw_model if isinstance(raw_model, str) else None
        agent = self._agents.value(agent_label(event.agent_id))
        model = self._models.value(model_name)
        usage = event.usage
        if usage.prompt_tokens:
            self._tokens.inc(usage.prompt_tokens, agent=agent, model=model, direction="prompt")
        if usage.completion_tokens:
            self._tokens.inc(usage.completion_tokens, agent=agent, model=model,
                             direction="completion")
        cost = self._prices.cost(model_name, usage)
        if cost is not None:
            self._money.inc(cost, agent=agent, model=model)
            self._cost.put(event.run_id, (self._cost.get(event.run_id) or 0.0) + cost)

    def _observe_ms(self, stage: m.Stage, ms: float | None) -> None:
        if ms is not None:
            self.stage(stage, ms / 1000.0)

    # -- tools.results ------------------------------------------------------

    async def on_tool_result(self, delivery: Delivery[ToolResult]) -> None:
        self._ingested(delivery)
        result = delivery.message
        tool = self._tools.value(result.tool)
        outcome = "ok" if result.ok or result.error is None else result.error.code.value
        self._tool_calls.inc(tool=tool, outcome=outcome)
        seconds = result.duration_ms / 1000.0
        self._tool_duration.observe(seconds, tool=tool)
        self.stage(m.Stage.TOOL_CALL, seconds)
        call = self._call(result.call_id)
        call.result_at = delivery.envelope.time
        call.started_at = delivery.envelope.time - _ms(result.duration_ms)
        self._pair(result.call_id)

    def _call(self, call_id: str) -> _Call:
        call = self._calls.get(call_id)
        if call is None:
            call = _Call()
            self._calls.put(call_id, call)
        return call

    def _pair(self, call_id: str) -> None:
        call = self._calls.get(call_id)
        if call is None:
            return
        if not call.tool_queue_seen and call.requested_at and call.started_at:
            call.tool_queue_seen = True
            self.stage(m.Stage.TOOL_QUEUE, _seconds(call.requested_at, call.started_at))
        if not call.result_queue_seen and call.result_at and call.completed_at:
            call.result_queue_seen = True
            self.stage(m.Stage.RESULT_QUEUE, _seconds(call.result_at, call.completed_at))
        if call.tool_queue_seen and call.result_queue_seen:
            self._calls.pop(call_id)

    # -- runs.completed -----------------------------------------------------

    async def on_run_completed(self, delivery: Delivery[RunCompleted]) -> None:
        """Rollup first, metrics after: a failed rollup write is retried by the pipeline,
        and the counters must not count the run once per attempt."""
        self._ingested(delivery)
        run = delivery.message
        agent_id = agent_label(run.agent_id)
        reason_class = classify_reason(run.error, run.status)
        started = self._started.get(run.run_id)
        duration_ms: float | None = None
        if run.metrics.duration_ms > 0:
            duration_ms = float(run.metrics.duration_ms)
        elif started is not None:
            duration_ms = _seconds(started, run.completed_at) * 1000.0
        cost = self._cost.get(run.run_id)
        if cost is None:
            cost = self._prices.cost(None, run.usage)
        if self._rollups is not None:
            await self._rollups.record(RunSummary(
                run_id=run.run_id, agent=agent_id, status=run.status,
                reason_class=reason_class, ended_at=run.completed_at,
                duration_ms=duration_ms, usage=run.usage, cost=cost,
            ))
        self._started.pop(run.run_id)
        self._cost.pop(run.run_id)
        agent = self._agents.value(agent_id)
        self._runs.inc(agent=agent, outcome=run.status.value, reason_class=reason_class.value)
        if duration_ms is not None:
            self._run_duration.observe(duration_ms / 1000.0, agent=agent,
                                       outcome=run.status.value)


def _ms(value: float) -> timedelta:
    return timedelta(milliseconds=value)
