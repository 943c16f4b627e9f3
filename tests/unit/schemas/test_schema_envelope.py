from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from schemas.envelope import (
    HEADER_CONTENT_TYPE,
    HEADER_ID,
    HEADER_SCHEMA_VERSION,
    HEADER_TIME,
    HEADER_TRACEPARENT,
    HEADER_TYPE,
    Envelope,
    EnvelopeError,
    deterministic_id,
)
from schemas.errors import ContractError
from tests.unit.schemas.samples import T0, sample_request

pytestmark = pytest.mark.unit

TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def _envelope(**changes: object) -> Envelope:
    base = Envelope.new(
        sample_request(), source="mindstream/test", message_id="msg-1", traceparent=TRACE, time=T0
    )
    return base.model_copy(update=changes)


def test_round_trip_through_headers() -> None:
    envelope = _envelope(causation_id="cause-1")
    headers = envelope.to_headers()
    assert (HEADER_CONTENT_TYPE, b"application/json") in headers
    assert dict(headers)[HEADER_TIME] == b"2025-01-02T03:04:05.678901Z"
    assert all(isinstance(v, bytes) for _, v in headers)
    assert Envelope.from_headers(headers) == envelope
    as_mapping = {k: v.decode() for k, v in headers}
    assert Envelope.from_headers(as_mapping) == envelope
    upper = [(k.upper(), v) for k, v in headers]
    assert Envelope.from_headers(upper) == envelope


def test_optional_headers_are_omitted() -> None:
    envelope = Envelope.new(sample_request(), source="s", time=T0).model_copy(
        update={"correlation_id": None}
    )
    names = [k for k, _ in envelope.to_headers()]
    assert "correlation_id" not in names
    assert "traceparent" not in names
    assert Envelope.from_headers(envelope.to_headers()) == envelope


@pytest.mark.parametrize(
    ("header", "value", "expected"),
    [
        (HEADER_ID, None, "missing header 'ce_id'"),
        (HEADER_TIME, b"yesterday", "header 'ce_time'"),
        (HEADER_TIME, b"2025-01-01T00:00:00", "header 'ce_time'"),
        (HEADER_TYPE, b"Not A Type", "header 'ce_type'"),
        (HEADER_SCHEMA_VERSION, b"two", "header 'schema_version'"),
        (HEADER_SCHEMA_VERSION, b"0", "header 'schema_version'"),
        ("ce_specversion", b"0.3", "header 'ce_specversion'"),
        (HEADER_CONTENT_TYPE, b"application/avro", "header 'content-type'"),
        (HEADER_ID, b"\xff\xfe", "not valid UTF-8"),
    ],
)
def test_bad_headers_are_named(header: str, value: bytes | None, expected: str) -> None:
    headers = [(k, v) for k, v in _envelope().to_headers() if k != header]
    if value is not None:
        headers.append((header, value))
    with pytest.raises(EnvelopeError, match=expected) as caught:
        Envelope.from_headers(headers)
    assert isinstance(caught.value, ContractError)
    assert isinstance(caught.value, ValueError)


def test_conflicting_duplicate_header_is_refused() -> None:
    headers = [*_envelope().to_headers(), (HEADER_ID, b"other")]
    with pytest.raises(EnvelopeError, match="twice"):
        Envelope.from_headers(headers)
    same_twice = [*_envelope().to_headers(), (HEADER_ID, _envelope().id.encode())]
    assert Envelope.from_headers(same_twice).id == _envelope().id


def test_invalid_traceparent_is_dropped_not_fatal() -> None:
    headers = [(k, v) for k, v in _envelope().to_headers() if k != HEADER_TRACEPARENT]
    headers.append((HEADER_TRACEPARENT, b"garbage"))
    assert Envelope.from_headers(headers).traceparent is None


def test_unknown_headers_are_ignored() -> None:
    headers = [*_envelope().to_headers(), ("x-custom", b"\xff")]
    assert Envelope.from_headers(headers) == _envelope()


def test_new_fills_defaults_and_propagates_causation() -> None:
    request = sample_request()
    first = Envelope.new(request, source="client")
    assert uuid.UUID(first.id).version == 4
    assert first.type == "mindstream.runs.requested"
    assert first.schema_version == 1
    assert first.correlation_id == "run-1"  # the run, taken from the message
    assert first.time.tzinfo is UTC
    assert (datetime.now(UTC) - first.time).total_seconds() < 60

    parent = first.model_copy(update={"traceparent": TRACE, "correlation_id": "flow-9"})
    child = Envelope.new(request, source="memory", caused_by=parent, message_id="fixed")
    assert child.id == "fixed"
    assert child.causation_id == parent.id
    assert child.correlation_id == "flow-9"
    assert child.traceparent == TRACE
    explicit = Envelope.new(request, source="m", caused_by=parent, correlation_id="other")
    assert explicit.correlation_id == "other"


def test_envelope_is_frozen_and_validated() -> None:
    envelope = _envelope()
    with pytest.raises(ValueError, match="frozen"):
        envelope.id = "x"  # type: ignore[misc]
    with pytest.raises(ValueError, match="timezone"):
        Envelope(id="a", type="a.b", source="s", time=datetime(2025, 1, 1), schema_version=1)


def test_deterministic_ids_are_stable() -> None:
    assert deterministic_id("run-1", "tool", "call-1") == deterministic_id(
        "run-1", "tool", "call-1"
    )
    # Pinned: a change here would make every replay look like new messages.
    assert deterministic_id("run-1", "step", "0") == "3468d43d-4cc2-56bc-b2d2-c290cadec98c"
    assert uuid.UUID(deterministic_id("x")).version == 5
    assert deterministic_id("a/b", "c") != deterministic_id("a", "b/c")
    assert deterministic_id("run-1", "step", "1") != deterministic_id("run-1", "step", "0")
    with pytest.raises(ValueError, match="at least one"):
        deterministic_id()
