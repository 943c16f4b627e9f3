from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.observability import tracing
from shared.observability.tracing import (
    TraceContext,
    child_traceparent,
    configure_tracing,
    new_traceparent,
    parse_traceparent,
    shutdown_tracing,
    start_span,
)

pytestmark = pytest.mark.unit

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

trace_ids = st.integers(min_value=1, max_value=2**128 - 1).map(lambda v: f"{v:032x}")
span_ids = st.integers(min_value=1, max_value=2**64 - 1).map(lambda v: f"{v:016x}")
flags = st.integers(min_value=0, max_value=255)
contexts = st.builds(TraceContext, trace_ids, span_ids, flags)


@given(contexts)
def test_header_round_trips(context: TraceContext) -> None:
    assert parse_traceparent(context.to_header()) == context
    assert parse_traceparent(context.to_header().encode()) == context


@given(contexts)
def test_child_keeps_trace_and_flags_with_a_new_span(context: TraceContext) -> None:
    child = parse_traceparent(child_traceparent(context.to_header()))
    assert child is not None
    assert child.trace_id == context.trace_id
    assert child.flags == context.flags
    assert child.span_id != context.span_id
    assert parse_traceparent(child_traceparent(context)) is not None


@given(st.one_of(st.text(max_size=80), st.binary(max_size=80)))
def test_parsing_never_raises(value: str | bytes) -> None:
    result = parse_traceparent(value)
    assert result is None or isinstance(result, TraceContext)


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # zero span id
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # upper case
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  # short trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",  # short span id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",  # short flags
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",  # bad flags
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # forbidden version
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",  # v00 has 4 fields
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01extra",  # no separator
        " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        b"\xff\xfe",
    ],
)
def test_invalid_values_are_refused(value: str | bytes | None) -> None:
    assert parse_traceparent(value) is None


def test_a_future_version_is_read_by_its_first_fields() -> None:
    parsed = parse_traceparent(
        "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds"
    )
    assert parsed == TraceContext("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", 1)
    assert parsed.to_header() == PARENT


def test_new_traceparent_starts_a_fresh_trace() -> None:
    first = parse_traceparent(new_traceparent())
    second = parse_traceparent(new_traceparent(sampled=False))
    assert first is not None
    assert second is not None
    assert first.sampled
    assert not second.sampled
    assert first.trace_id != second.trace_id


@pytest.mark.parametrize("parent", [None, "garbage", b""])
def test_child_of_nothing_starts_a_new_trace(parent: str | bytes | None) -> None:
    assert parse_traceparent(child_traceparent(parent)) is not None


def test_trace_context_refuses_invalid_fields() -> None:
    with pytest.raises(ValueError, match="trace_id"):
        TraceContext("0" * 32, "00f067aa0ba902b7")
    with pytest.raises(ValueError, match="span_id"):
        TraceContext("4bf92f3577b34da6a3ce929d0e0e4736", "xyz")
    with pytest.raises(ValueError, match="flags"):
        TraceContext("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", 256)


# -- the OpenTelemetry bridge ------------------------------------------------


def test_tracing_stays_off_without_an_endpoint() -> None:
    assert configure_tracing("tools", environ={}) is False
    assert not tracing.tracing_enabled()


def test_start_span_without_tracing_hands_out_a_child_traceparent() -> None:
    assert not tracing.tracing_enabled()
    with start_span("handle tools.calls", PARENT, {"topic": "t"}) as span:
        span.set_attribute("ignored", True)
        child = parse_traceparent(span.traceparent)
        assert span.traceparent == span.traceparent  # stable once computed
    assert not span.recording
    assert child is not None
    assert child.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert child.span_id != "00f067aa0ba902b7"
    with pytest.raises(KeyError), start_span("failing", None):
        raise KeyError("handler error passes through")


@pytest.fixture
def exported() -> Iterator[Any]:
    pytest.importorskip("opentelemetry.sdk.trace")
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    assert configure_tracing("tools", exporter=exporter, set_global=False)
    try:
        yield exporter
    finally:
        shutdown_tracing()


def test_start_span_with_the_sdk_continues_the_parent_trace(exported: Any) -> None:
    with start_span("handle tools.calls", PARENT, {"topic": "mindstream.tools.calls.v1"}) as span:
        span.set_attribute("call_id", "c1")
        published = parse_traceparent(span.traceparent)
    (finished,) = exported.get_finished_spans()
    assert span.recording
    assert finished.name == "handle tools.calls"
    assert finished.parent.span_id == 0x00F067AA0BA902B7
    assert f"{finished.context.trace_id:032x}" == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert dict(finished.attributes) == {
        "topic": "mindstream.tools.calls.v1",
        "call_id": "c1",
    }
    assert finished.resource.attributes["service.name"] == "tools"
    assert published is not None
    assert published.span_id == f"{finished.context.span_id:016x}"


def test_start_span_with_the_sdk_records_errors_and_roots_bad_parents(exported: Any) -> None:
    with pytest.raises(ValueError, match="bad tool"), start_span("handle", "not-a-traceparent"):
        raise ValueError("bad tool")
    (finished,) = exported.get_finished_spans()
    assert finished.parent is None
    assert finished.status.is_ok is False
    assert finished.events[0].name == "exception"


def test_spans_without_a_traceparent_nest_under_the_current_one(exported: Any) -> None:
    """A model or tool call inside a handler's span is that span's child, one trace per run."""
    with start_span("consume mindstream.runs.ready.v1", PARENT), start_span("model.call"):
        pass
    inner, outer = exported.get_finished_spans()
    assert inner.name == "model.call"
    assert inner.parent.span_id == outer.context.span_id
    assert inner.context.trace_id == outer.context.trace_id


def test_tracing_stays_off_when_the_sdk_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)
    assert configure_tracing("tools", "http://127.0.0.1:4318") is False
    assert not tracing.tracing_enabled()


def test_the_endpoint_comes_from_the_environment() -> None:
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http.trace_exporter")
    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318/"}
    try:
        assert configure_tracing("tools", environ=environ, set_global=False) is True
        assert tracing.tracing_enabled()
    finally:
        shutdown_tracing()
    assert not tracing.tracing_enabled()
