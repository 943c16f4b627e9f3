"""W3C trace context for message headers, and an optional bridge to OpenTelemetry.

Every message carries a ``traceparent`` header
(``00-<32 hex trace id>-<16 hex span id>-<2 hex flags>``). A handler that
publishes because of a message gives its output a *child* traceparent:
the same trace id and a fresh span id, so one run is one trace across all
services, whether or not anything collects spans.

Collecting spans is optional. :func:`start_span` does nothing but hand out
a child traceparent until :func:`configure_tracing` has switched on the
OpenTelemetry SDK, which happens only when an OTLP endpoint is configured
and the SDK is installed (``opentelemetry-sdk`` and
``opentelemetry-exporter-otlp-proto-http``; it is imported lazily, so
services without it pay nothing).

Parsing never raises: W3C asks receivers to drop an invalid traceparent
and start a new trace, and :func:`parse_traceparent` returns ``None`` so the
caller can do exactly that.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

__all__ = [
    "SAMPLED",
    "SpanHandle",
    "TraceContext",
    "child_traceparent",
    "configure_tracing",
    "new_traceparent",
    "parse_traceparent",
    "shutdown_tracing",
    "start_span",
    "tracing_enabled",
]

_log = logging.getLogger(__name__)

SAMPLED = 0x01
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16

AttributeValue = str | bool | int | float


@dataclass(frozen=True)
class TraceContext:
    """A parsed, valid traceparent. ``span_id`` is the id of the sender's span."""

    trace_id: str
    span_id: str
    flags: int = SAMPLED

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[0-9a-f]{32}", self.trace_id) or self.trace_id == _ZERO_TRACE:
            raise ValueError("trace_id must be 32 lowercase hex digits, not all zero")
        if not re.fullmatch(r"[0-9a-f]{16}", self.span_id) or self.span_id == _ZERO_SPAN:
            raise ValueError("span_id must be 16 lowercase hex digits, not all zero")
        if not 0 <= self.flags <= 0xFF:
            raise ValueError("flags must fit in one byte")

    @property
    def sampled(self) -> bool:
        return bool(self.flags & SAMPLED)

    def to_header(self) -> str:
        """Always version 00: the only version this code knows how to produce."""
        return f"00-{self.trace_id}-{self.span_id}-{self.flags:02x}"

    def child(self) -> TraceContext:
        return TraceContext(self.trace_id, _new_span_id(), self.flags)


def parse_traceparent(value: str | bytes | None) -> TraceContext | None:
    """The trace context in ``value``, or ``None`` if it is absent or invalid.

    Version ``00`` must be exactly the four fields. A higher version is read
    by its first four fields, as W3C asks for forward compatibility;
    version ``ff`` is invalid.
    """
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    match = _TRACEPARENT.match(value)
    if match is None:
        return None
    version, trace_id, span_id, flags = match.groups()
    rest = value[match.end() :]
    valid = (
        version != "ff"
        and not (version == "00" and rest)
        and (not rest or rest.startswith("-"))
        and trace_id != _ZERO_TRACE
        and span_id != _ZERO_SPAN
    )
    if not valid:
        return None
    return TraceContext(trace_id, span_id, int(flags, 16))


def new_traceparent(*, sampled: bool = True) -> str:
    """A traceparent that starts a new trace (for a request arriving without one)."""
    return TraceContext(_new_trace_id(), _new_span_id(), SAMPLED if sampled else 0).to_header()


def child_traceparent(parent: str | bytes | TraceContext | None) -> str:
    """A traceparent for a message caused by ``parent``: same trace, new span id.

    An absent or invalid parent starts a new trace rather than failing the
    handler: tracing is diagnostic and must never lose a message.
    """
    context = parent if isinstance(parent, TraceContext) else parse_traceparent(parent)
    if context is None:
        return new_traceparent()
    return context.child().to_header()


def _new_trace_id() -> str:
    while True:
        value = secrets.randbits(128)
        if value:
            return f"{value:032x}"


def _new_span_id() -> str:
    while True:
        value = secrets.randbits(64)
        if value:
            return f"{value:016x}"


# -- the OpenTelemetry bridge -------------------------------------------------


class SpanHandle:
    """What :func:`start_span` yields: the traceparent to put on messages the
    handler publishes, and a place for attributes (dropped when tracing is off)."""

    __slots__ = ("_parent", "_span", "_traceparent")

    def __init__(self, parent: str | bytes | None, span: Any = None) -> None:
        self._parent = parent
        self._span = span
        self._traceparent: str | None = None

    @property
    def traceparent(self) -> str:
        """The traceparent of this span (computed on first use when tracing is off)."""
        if self._traceparent is None:
            if self._span is not None:
                ctx = self._span.get_span_context()
                self._traceparent = TraceContext(
                    f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}", int(ctx.trace_flags)
                ).to_header()
            else:
                self._traceparent = child_traceparent(self._parent)
        return self._traceparent

    @property
    def recording(self) -> bool:
        return self._span is not None

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        if self._span is not None:
            self._span.set_attribute(key, value)


@dataclass
class _Tracer:
    provider: Any
    tracer: Any
    propagator: Any


_tracer: _Tracer | None = None


def tracing_enabled() -> bool:
    return _tracer is not None


def configure_tracing(
    service: str,
    endpoint: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    exporter: Any = None,
    set_global: bool = True,
) -> bool:
    """Switch span export on; returns whether it is on.

    ``endpoint`` defaults to ``OTEL_EXPORTER_OTLP_ENDPOINT`` from ``environ``
    (the process environment); with none, or without the SDK installed,
    tracing stays off and this says so in one log line. ``exporter`` replaces
    the OTLP exporter (tests pass an in-memory one; spans are then exported
    synchronously). ``set_global`` also installs the provider for libraries
    that trace through the global OpenTelemetry API.
    """
    global _tracer  # noqa: PLW0603 - one tracer per process, like the OTel global it mirrors
    env = os.environ if environ is None else environ
    endpoint = endpoint or env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None
    if exporter is None and endpoint is None:
        return False
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            assert endpoint is not None
            url = endpoint.rstrip("/")
            exporter = OTLPSpanExporter(
                endpoint=url if url.endswith("/v1/traces") else url + "/v1/traces"
            )
            processor: Any = BatchSpanProcessor(exporter)
        else:
            processor = SimpleSpanProcessor(exporter)
    except ImportError as missing:
        _log.warning(
            "tracing stays off: OpenTelemetry SDK not installed",
            extra={"missing": str(missing)},
        )
        return False
    shutdown_tracing()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(processor)
    if set_global:
        trace.set_tracer_provider(provider)
    _tracer = _Tracer(provider, provider.get_tracer("mindstream"), TraceContextTextMapPropagator())
    return True


def shutdown_tracing() -> None:
    """Flush and stop span export (entrypoints call it on the way out)."""
    global _tracer
    current, _tracer = _tracer, None
    if current is not None:
        current.provider.shutdown()


@contextmanager
def start_span(
    name: str,
    traceparent: str | bytes | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> Iterator[SpanHandle]:
    """A span named ``name``, child of ``traceparent`` (else of the current span), around the block.

    With tracing off this costs one global read and one small object. An
    exception leaving the block is recorded on the span and re-raised.
    """
    current = _tracer
    if current is None:
        yield SpanHandle(traceparent)
        return
    carrier: dict[str, str] = {}
    parsed = parse_traceparent(traceparent)
    if parsed is not None:
        carrier["traceparent"] = parsed.to_header()
    # No traceparent: nest under the current span (a model call inside a handler's span).
    parent_context = current.propagator.extract(carrier) if parsed is not None else None
    with current.tracer.start_as_current_span(
        name, context=parent_context, attributes=dict(attributes or {})
    ) as span:
        yield SpanHandle(traceparent, span)
