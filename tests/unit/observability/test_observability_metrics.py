from __future__ import annotations

import logging
import re

import pytest
from prometheus_client import generate_latest

from shared.observability.metrics import (
    DEAD_LETTERED,
    HANDLER_DURATION,
    HANDLER_FAILURES,
    LATENCY_BUCKETS_SECONDS,
    MAX_LABEL_VALUE_LENGTH,
    MESSAGES_CONSUMED,
    MESSAGES_PRODUCED,
    METRICS,
    OTHER,
    RETRIES,
    MetricCatalogue,
    MetricKind,
    MetricSpec,
    ServiceMetrics,
    exported_metric_names,
    normalise_label_value,
)

pytestmark = pytest.mark.unit

TOPIC = "mindstream.runs.ready.v1"
# The consumer-loop metrics every service has (services declare more in the same catalogue).
CORE = [MESSAGES_CONSUMED, MESSAGES_PRODUCED, HANDLER_FAILURES, DEAD_LETTERED, HANDLER_DURATION, RETRIES]
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)")


def sample_names(metrics: ServiceMetrics) -> set[str]:
    text = generate_latest(metrics.registry).decode()
    return {
        m.group(1)
        for line in text.splitlines()
        if line and not line.startswith("#") and (m := _SAMPLE.match(line))
    }


def touch_core(metrics: ServiceMetrics) -> None:
    metrics.consumed(TOPIC)
    metrics.produced(TOPIC, 2)
    metrics.handler_failed(TOPIC, "transient")
    metrics.dead_lettered(TOPIC, "contract")
    metrics.retried(TOPIC)
    metrics.observe_handler(TOPIC, 0.02)


def test_exposition_has_exactly_the_declared_names() -> None:
    metrics = ServiceMetrics("reasoning", topics=[TOPIC])
    touch_core(metrics)
    declared = set().union(*(spec.exported_names for spec in CORE))
    assert sample_names(metrics) == declared
    assert declared <= exported_metric_names()


def test_exported_names_include_suffix_forms() -> None:
    names = exported_metric_names()
    assert {
        "mindstream_messages_consumed_total",
        "mindstream_messages_produced_total",
        "mindstream_handler_failures_total",
        "mindstream_dead_lettered_total",
        "mindstream_retries_total",
        "mindstream_handler_duration_seconds_bucket",
        "mindstream_handler_duration_seconds_count",
        "mindstream_handler_duration_seconds_sum",
    } <= names
    assert "mindstream_handler_duration_seconds" not in names
    assert all(name.startswith("mindstream_") for name in names)


def test_core_metrics_carry_the_service_label_and_values() -> None:
    metrics = ServiceMetrics("tools", topics=[TOPIC])
    touch_core(metrics)
    registry = metrics.registry
    labels = {"service": "tools", "topic": TOPIC}
    assert registry.get_sample_value("mindstream_messages_consumed_total", labels) == 1
    assert registry.get_sample_value("mindstream_messages_produced_total", labels) == 2
    assert (
        registry.get_sample_value(
            "mindstream_handler_failures_total", {**labels, "kind": "transient"}
        )
        == 1
    )
    assert (
        registry.get_sample_value(
            "mindstream_dead_lettered_total", {**labels, "reason_kind": "contract"}
        )
        == 1
    )
    assert registry.get_sample_value("mindstream_handler_duration_seconds_sum", labels) == 0.02


def test_two_services_in_one_process_do_not_collide() -> None:
    first = ServiceMetrics("memory")
    second = ServiceMetrics("memory")
    first.consumed(TOPIC)
    assert first.registry is not second.registry
    labels = {"service": "memory", "topic": TOPIC}
    assert first.registry.get_sample_value("mindstream_messages_consumed_total", labels) == 1
    assert second.registry.get_sample_value("mindstream_messages_consumed_total", labels) is None


def test_time_handler_uses_the_clock_and_records_failures_too() -> None:
    ticks = iter([10.0, 10.5, 20.0, 23.0])
    metrics = ServiceMetrics("tools", clock=lambda: next(ticks))
    with metrics.time_handler(TOPIC):
        pass
    with pytest.raises(RuntimeError), metrics.time_handler(TOPIC):
        raise RuntimeError("handler failed")
    labels = {"service": "tools", "topic": TOPIC}
    registry = metrics.registry
    assert registry.get_sample_value("mindstream_handler_duration_seconds_sum", labels) == 3.5
    assert registry.get_sample_value("mindstream_handler_duration_seconds_count", labels) == 2


def test_buckets_span_a_millisecond_to_thirty_seconds() -> None:
    assert HANDLER_DURATION.buckets == LATENCY_BUCKETS_SECONDS
    assert LATENCY_BUCKETS_SECONDS[0] == 0.001
    assert LATENCY_BUCKETS_SECONDS[-1] == 30.0


def test_unknown_topic_and_kind_are_normalised_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = ServiceMetrics("reasoning", topics=[TOPIC])
    with caplog.at_level(logging.WARNING, logger="shared.observability.metrics"):
        metrics.consumed("user-controlled-topic-1")
        metrics.consumed("user-controlled-topic-2")
        metrics.handler_failed(TOPIC, "exploded")  # type: ignore[arg-type]
    registry = metrics.registry
    other = {"service": "reasoning", "topic": OTHER}
    assert registry.get_sample_value("mindstream_messages_consumed_total", other) == 2
    assert (
        registry.get_sample_value(
            "mindstream_handler_failures_total",
            {"service": "reasoning", "topic": TOPIC, "kind": OTHER},
        )
        == 1
    )
    warnings = [r for r in caplog.records if r.name == "shared.observability.metrics"]
    assert len(warnings) == 2  # once per (metric, label), not once per value


def test_free_label_values_are_cut() -> None:
    assert normalise_label_value("x" * 500, None) == "x" * MAX_LABEL_VALUE_LENGTH
    assert normalise_label_value("a", frozenset({"a"})) == "a"
    assert normalise_label_value("b", frozenset({"a"})) == OTHER


def test_wrong_label_names_are_programming_errors() -> None:
    metrics = ServiceMetrics("reasoning")
    with pytest.raises(ValueError, match="missing"):
        metrics.counter(HANDLER_FAILURES).inc(topic=TOPIC)
    with pytest.raises(ValueError, match="unknown"):
        metrics.counter(MESSAGES_CONSUMED).inc(topic=TOPIC, run_id="r1")


def test_service_declared_metrics_use_the_same_declaration() -> None:
    catalogue = MetricCatalogue(METRICS)
    run_latency = catalogue.declare(
        MetricSpec(
            "mindstream_run_duration_seconds",
            MetricKind.HISTOGRAM,
            "Run request to completion.",
            ("service", "outcome"),
            buckets=(0.1, 1.0, 10.0, 60.0),
            allowed={"outcome": frozenset({"completed", "failed"})},
        )
    )
    active = catalogue.declare(
        MetricSpec("mindstream_runs_active", MetricKind.GAUGE, "Runs in flight.", ("service",))
    )
    metrics = ServiceMetrics("reasoning", catalogue=catalogue)
    metrics.histogram(run_latency).observe(2.0, outcome="completed")
    metrics.gauge(active).set(3)
    metrics.gauge(active).dec()
    assert metrics.histogram(run_latency) is metrics.histogram(run_latency)
    registry = metrics.registry
    assert registry.get_sample_value("mindstream_runs_active", {"service": "reasoning"}) == 2
    assert (
        registry.get_sample_value(
            "mindstream_run_duration_seconds_bucket",
            {"service": "reasoning", "outcome": "completed", "le": "10.0"},
        )
        == 1
    )
    assert "mindstream_run_duration_seconds_bucket" in exported_metric_names(catalogue)
    assert "mindstream_runs_active" in exported_metric_names(catalogue)
    assert "mindstream_runs_active" not in exported_metric_names()


def test_undeclared_or_mismatched_specs_are_refused() -> None:
    metrics = ServiceMetrics("reasoning")
    stray = MetricSpec("mindstream_stray_total", MetricKind.COUNTER, "Not declared.")
    with pytest.raises(ValueError, match="declare"):
        metrics.counter(stray)
    with pytest.raises(TypeError, match="histogram"):
        metrics.counter(HANDLER_DURATION)


def test_catalogue_refuses_two_meanings_for_one_name() -> None:
    catalogue = MetricCatalogue([DEAD_LETTERED])
    assert catalogue.declare(DEAD_LETTERED) is DEAD_LETTERED
    changed = MetricSpec(DEAD_LETTERED.name, MetricKind.COUNTER, "Something else.", ("service",))
    with pytest.raises(ValueError, match="already declared"):
        catalogue.declare(changed)
    assert len(catalogue) == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "runs_total"}, "must match"),
        ({"name": "mindstream_Runs_total"}, "must match"),
        ({"name": "mindstream_runs"}, "_total"),
        ({"help": " "}, "help"),
        ({"labels": ("topic", "topic")}, "duplicate"),
        ({"labels": ("le",)}, "invalid label"),
        ({"labels": ("Topic",)}, "invalid label"),
        ({"buckets": (1.0,)}, "only histograms"),
        ({"allowed": {"kind": frozenset({"a"})}}, "unknown labels"),
        ({"labels": ("kind",), "allowed": {"kind": frozenset()}}, "empty"),
    ],
)
def test_counter_spec_validation(kwargs: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {
        "name": "mindstream_runs_total",
        "kind": MetricKind.COUNTER,
        "help": "Runs.",
    }
    fields.update(kwargs)
    with pytest.raises(ValueError, match=message):
        MetricSpec(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "needs buckets"),
        ({"buckets": (1.0, 1.0)}, "increasing"),
        ({"buckets": (1.0,), "name": "mindstream_latency_seconds_total"}, "reserved suffix"),
    ],
)
def test_histogram_spec_validation(kwargs: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {
        "name": "mindstream_latency_seconds",
        "kind": MetricKind.HISTOGRAM,
        "help": "Latency.",
    }
    fields.update(kwargs)
    with pytest.raises(ValueError, match=message):
        MetricSpec(**fields)  # type: ignore[arg-type]


def test_service_name_must_be_a_label_value_we_control() -> None:
    with pytest.raises(ValueError, match="service name"):
        ServiceMetrics("Reasoning Service")
