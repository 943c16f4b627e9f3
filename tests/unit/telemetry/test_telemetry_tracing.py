"""The consumer pipeline wraps each handler call in a span when tracing is on."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord

from schemas.codec import encode
from schemas.envelope import Envelope
from schemas.runs import RunEvent, RunEventKind
from schemas.topics import RUNS_EVENTS
from shared.kafka.consumer import ConsumerPipeline, Delivery, Outcome
from shared.observability.tracing import configure_tracing, new_traceparent, shutdown_tracing

pytestmark = pytest.mark.unit

otel = pytest.importorskip("opentelemetry.sdk.trace.export.in_memory_span_exporter")


@pytest.fixture
def exporter() -> Iterator[Any]:
    spans = otel.InMemorySpanExporter()
    assert configure_tracing("telemetry", exporter=spans, set_global=False)
    yield spans
    shutdown_tracing()


def record() -> tuple[ConsumerRecord[bytes, bytes], str]:
    event = RunEvent(run_id="r-1", session_id="s-1", agent_id="a", seq=0,
                     kind=RunEventKind.RUN_STARTED, at=datetime.now(UTC))
    traceparent = new_traceparent()
    envelope = Envelope.new(event, source="mindstream/test", traceparent=traceparent)
    body = encode(event)
    return ConsumerRecord(RUNS_EVENTS.name, 0, 7, 0, 0, b"s-1", body, None, 3, len(body),
                          envelope.to_headers()), traceparent


async def test_a_handled_message_is_one_span_in_the_senders_trace(exporter: Any) -> None:
    seen: list[Delivery[RunEvent]] = []

    async def handle(delivery: Delivery[RunEvent]) -> None:
        seen.append(delivery)

    pipeline: ConsumerPipeline[RunEvent] = ConsumerPipeline(
        spec=RUNS_EVENTS, group="g", handler=handle, publisher=None,  # type: ignore[arg-type]
        ledger=None)
    raw, traceparent = record()
    assert await pipeline.process(raw) is Outcome.HANDLED
    [span] = exporter.get_finished_spans()
    assert span.name == f"consume {RUNS_EVENTS.name}"
    assert f"{span.context.trace_id:032x}" == traceparent.split("-")[1]
    assert f"{span.parent.span_id:016x}" == traceparent.split("-")[2]
    assert len(seen) == 1

