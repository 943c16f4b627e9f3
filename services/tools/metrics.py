"""The tool service's own metrics, declared once at import.

The ``tool`` label takes only registered tool names (anything else, such as
a name a model invented, is reported as ``other``), so a hostile or confused
model cannot blow up the label set.
"""

from __future__ import annotations

from services.tools.errors import ErrorCode
from services.tools.registry import ToolRegistry
from services.tools.results import INTERRUPTED
from shared.observability.metrics import (
    LATENCY_BUCKETS_SECONDS,
    OTHER,
    MetricKind,
    MetricSpec,
    ServiceMetrics,
    declare_metric,
)
from shared.resilience import BreakerState

__all__ = ["BREAKER_STATE", "TOOL_CALLS", "TOOL_DURATION", "TOOL_REPLAYS", "ToolMetrics"]

OUTCOMES = frozenset({"ok", INTERRUPTED, *(c.value for c in ErrorCode)})

TOOL_CALLS = declare_metric(MetricSpec(
    "mindstream_tool_calls_total", MetricKind.COUNTER,
    "Tool calls answered, by tool and outcome (ok or the error code).",
    ("service", "tool", "outcome"), allowed={"outcome": OUTCOMES},
))  # fmt: skip
TOOL_DURATION = declare_metric(MetricSpec(
    "mindstream_tool_call_duration_seconds", MetricKind.HISTOGRAM,
    "Wall time of a tool call in the executor: slot waits, attempts and backoff included.",
    ("service", "tool"), buckets=LATENCY_BUCKETS_SECONDS,
))  # fmt: skip
TOOL_REPLAYS = declare_metric(MetricSpec(
    "mindstream_tool_call_replays_total", MetricKind.COUNTER,
    "Redelivered calls answered from the ledger without running the tool again.",
    ("service", "tool"),
))  # fmt: skip
BREAKER_STATE = declare_metric(MetricSpec(
    "mindstream_tool_breaker_state", MetricKind.GAUGE,
    "Circuit breaker of a tool: 0 closed, 1 half-open, 2 open.",
    ("service", "tool"),
))  # fmt: skip

_BREAKER_VALUE = {BreakerState.CLOSED: 0.0, BreakerState.HALF_OPEN: 1.0, BreakerState.OPEN: 2.0}


class ToolMetrics:
    def __init__(self, metrics: ServiceMetrics, registry: ToolRegistry) -> None:
        self._registry = registry
        self._calls = metrics.counter(TOOL_CALLS)
        self._duration = metrics.histogram(TOOL_DURATION)
        self._replays = metrics.counter(TOOL_REPLAYS)
        self._breaker = metrics.gauge(BREAKER_STATE)

    def _label(self, tool: str) -> str:
        return tool if tool in self._registry else OTHER

    def answered(self, tool: str, outcome: str, duration_s: float) -> None:
        label = self._label(tool)
        self._calls.inc(tool=label, outcome=outcome)
        self._duration.observe(duration_s, tool=label)

    def replayed(self, tool: str) -> None:
        self._replays.inc(tool=self._label(tool))

    def breaker(self, tool: str, state: BreakerState) -> None:
        if tool in self._registry:
            self._breaker.set(_BREAKER_VALUE[state], tool=tool)
