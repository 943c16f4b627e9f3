"""Every metric the telemetry service exports, declared once at import.

The tools service exports its own view of tool calls
(``mindstream_tool_calls_total``); the ``mindstream_tool_results_*`` series
here are what reached the bus, knowledge answers from memory included.

Labels are bounded: ``agent``, ``model`` and ``tool`` go through
:class:`services.telemetry.labels.BoundedLabel` before they get here;
``outcome``, ``reason_class``, ``stage``, ``direction`` have fixed allowed
sets; ``group`` and ``topic`` come from configuration and the topic
registry. Run, session and user ids never appear.
"""

from __future__ import annotations

from enum import StrEnum

from schemas.runs import RunStatus
from schemas.tools import ToolErrorCode
from services.telemetry.classify import ReasonClass
from shared.observability.metrics import (
    LATENCY_BUCKETS_SECONDS,
    MetricKind,
    MetricSpec,
    declare_metric,
)

__all__ = [
    "CONSUMER_LAG",
    "CONSUMER_LAG_MAX",
    "DEAD_LETTER_MESSAGES",
    "LAG_POLLS",
    "MODEL_COST",
    "MODEL_TOKENS",
    "RUNS",
    "RUN_BUCKETS_SECONDS",
    "RUN_DURATION",
    "STAGE_BUCKETS_SECONDS",
    "STAGE_DURATION",
    "TOOL_RESULTS",
    "TOOL_RESULT_DURATION",
    "Stage",
]

RUN_BUCKETS_SECONDS: tuple[float, ...] = (
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
)  # fmt: skip
"""A run spans one fast model call to a long tool chain waiting on approval."""
STAGE_BUCKETS_SECONDS: tuple[float, ...] = (*LATENCY_BUCKETS_SECONDS, 60.0, 120.0)


class Stage(StrEnum):
    """Where a run's time goes. ``*_queue`` stages are waits between services."""

    CONTEXT_ASSEMBLY = "context_assembly"
    RUN_QUEUE = "run_queue"
    MODEL_CALL = "model_call"
    TIME_TO_FIRST_TOKEN = "time_to_first_token"  # noqa: S105 - a stage, not a secret
    TOOL_CALL = "tool_call"
    TOOL_QUEUE = "tool_queue"
    RESULT_QUEUE = "result_queue"
    INGEST = "telemetry_ingest"


OUTCOMES = frozenset(s.value for s in RunStatus)
TOOL_OUTCOMES = frozenset({"ok"} | {c.value for c in ToolErrorCode})

RUN_DURATION = declare_metric(MetricSpec(
    "mindstream_run_end_to_end_seconds", MetricKind.HISTOGRAM,
    "End-to-end run time, from run.started (or the run's own clock) to its end.",
    ("agent", "outcome"), buckets=RUN_BUCKETS_SECONDS, allowed={"outcome": OUTCOMES},
))
STAGE_DURATION = declare_metric(MetricSpec(
    "mindstream_stage_duration_seconds", MetricKind.HISTOGRAM,
    "Time spent in one stage of a run (model call, tool call, queues between services...).",
    ("stage",), buckets=STAGE_BUCKETS_SECONDS,
    allowed={"stage": frozenset(s.value for s in Stage)},
))
RUNS = declare_metric(MetricSpec(
    "mindstream_runs_total", MetricKind.COUNTER,
    "Runs ended, by outcome and failure class (none for completed runs).",
    ("agent", "outcome", "reason_class"),
    allowed={"outcome": OUTCOMES, "reason_class": frozenset(c.value for c in ReasonClass)},
))
MODEL_TOKENS = declare_metric(MetricSpec(
    "mindstream_model_tokens_total", MetricKind.COUNTER,
    "Tokens sent to (prompt) and produced by (completion) models.",
    ("agent", "model", "direction"),
    allowed={"direction": frozenset({"prompt", "completion"})},
))
MODEL_COST = declare_metric(MetricSpec(
    "mindstream_model_cost_total", MetricKind.COUNTER,
    "Estimated model cost from the configured price table, in its currency.",
    ("agent", "model"),
))
TOOL_RESULTS = declare_metric(MetricSpec(
    "mindstream_tool_results_total", MetricKind.COUNTER,
    "Tool and knowledge results seen on tools.results, by tool and outcome (ok or error code).",
    ("tool", "outcome"), allowed={"outcome": TOOL_OUTCOMES},
))
TOOL_RESULT_DURATION = declare_metric(MetricSpec(
    "mindstream_tool_result_duration_seconds", MetricKind.HISTOGRAM,
    "Wall time of tool and knowledge calls as their result reports it (duration_ms).",
    ("tool",), buckets=STAGE_BUCKETS_SECONDS,
))
CONSUMER_LAG = declare_metric(MetricSpec(
    "mindstream_consumer_lag", MetricKind.GAUGE,
    "Messages not yet committed by a consumer group, summed over a topic's partitions.",
    ("group", "topic"),
))
CONSUMER_LAG_MAX = declare_metric(MetricSpec(
    "mindstream_consumer_lag_max", MetricKind.GAUGE,
    "The largest lag of any one partition of the topic for the group.",
    ("group", "topic"),
))
DEAD_LETTER_MESSAGES = declare_metric(MetricSpec(
    "mindstream_dead_letter_messages", MetricKind.GAUGE,
    "Messages ever written to <topic>.dlq (its end offsets); topic is the source topic.",
    ("topic",),
))
LAG_POLLS = declare_metric(MetricSpec(
    "mindstream_telemetry_broker_polls_total", MetricKind.COUNTER,
    "Broker offset polls for lag and dead letters, by result.",
    ("result",), allowed={"result": frozenset({"ok", "error"})},
))
