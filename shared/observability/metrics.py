"""Prometheus metrics, declared once as data and bound per service.

Every metric name the platform exports is a :class:`MetricSpec` in a
:class:`MetricCatalogue`. The shared catalogue :data:`METRICS` holds the
metrics every consumer loop reports; a service declares its own (run
latency, tool durations...) with :func:`declare_metric` at import time, so
:func:`exported_metric_names` sees them all and a test can check that
dashboards and alerts only reference names that really exist.

:class:`ServiceMetrics` binds the catalogue to one service with its own
``CollectorRegistry``: tests and several services in one process never
collide on the global registry. It fills the ``service`` label itself and
keeps label values bounded (unbounded label values are how a Prometheus
server runs out of memory): a value outside a label's allowed set becomes
``"other"`` and is logged once, rather than failing the handler that
reported it.
"""

from __future__ import annotations

import enum
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = [
    "DEAD_LETTERED",
    "DEAD_LETTER_REASONS",
    "FAILURE_KINDS",
    "HANDLER_DURATION",
    "HANDLER_FAILURES",
    "LATENCY_BUCKETS_SECONDS",
    "MAX_LABEL_VALUE_LENGTH",
    "MESSAGES_CONSUMED",
    "MESSAGES_PRODUCED",
    "METRICS",
    "OTHER",
    "RETRIES",
    "CounterHandle",
    "DeadLetterReason",
    "FailureKind",
    "GaugeHandle",
    "HistogramHandle",
    "MetricCatalogue",
    "MetricKind",
    "MetricSpec",
    "ServiceMetrics",
    "declare_metric",
    "exported_metric_names",
    "normalise_label_value",
]

_log = logging.getLogger(__name__)

PREFIX = "mindstream_"
OTHER = "other"
"""The value a label takes when the reported value is outside its allowed set."""
MAX_LABEL_VALUE_LENGTH = 120
"""Longer values of labels without an allowed set are cut; ids never belong in labels."""

_NAME = re.compile(r"^mindstream_[a-z][a-z0-9_]*[a-z0-9]$")
_LABEL = re.compile(r"^[a-z][a-z0-9_]*$")
_RESERVED_SUFFIXES = ("_total", "_bucket", "_count", "_sum", "_created", "_info")

LATENCY_BUCKETS_SECONDS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
"""1 ms to 30 s, about 2.5x apart: a handler's life from a cache hit to a slow model call."""


class MetricKind(enum.StrEnum):
    COUNTER = "counter"
    HISTOGRAM = "histogram"
    GAUGE = "gauge"


FailureKind = Literal["transient", "permanent"]
FAILURE_KINDS: frozenset[str] = frozenset({"transient", "permanent"})
DeadLetterReason = Literal["contract", "permanent", "retries_exhausted"]
DEAD_LETTER_REASONS: frozenset[str] = frozenset({"contract", "permanent", "retries_exhausted"})
"""Why a message was dead-lettered: it broke its contract, the handler raised a
permanent error, or a transient error outlived its retries."""


@dataclass(frozen=True)
class MetricSpec:
    """One exported metric: its name as Prometheus shows it, and its shape.

    Counter names end in ``_total`` (as exposed). ``allowed`` maps a label
    to the only values it may take; labels absent from it are free but cut
    to :data:`MAX_LABEL_VALUE_LENGTH`.
    """

    name: str
    kind: MetricKind
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] | None = None
    allowed: Mapping[str, frozenset[str]] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"metric name {self.name!r} must match {_NAME.pattern}")
        if self.kind is MetricKind.COUNTER:
            if not self.name.endswith("_total"):
                raise ValueError(f"counter {self.name!r} must end in _total")
        elif self.name.endswith(_RESERVED_SUFFIXES):
            raise ValueError(f"{self.kind} {self.name!r} must not end in a reserved suffix")
        if not self.help.strip():
            raise ValueError(f"{self.name}: help text is required")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"{self.name}: duplicate label names")
        for label in self.labels:
            if not _LABEL.fullmatch(label) or label == "le":
                raise ValueError(f"{self.name}: invalid label name {label!r}")
        self._check_buckets()
        unknown = set(self.allowed) - set(self.labels)
        if unknown:
            raise ValueError(f"{self.name}: allowed values for unknown labels {sorted(unknown)}")
        for label, values in self.allowed.items():
            if not values:
                raise ValueError(f"{self.name}: label {label!r} has an empty allowed set")
        frozen = MappingProxyType({k: frozenset(v) | {OTHER} for k, v in self.allowed.items()})
        object.__setattr__(self, "allowed", frozen)

    def _check_buckets(self) -> None:
        if self.kind is not MetricKind.HISTOGRAM:
            if self.buckets is not None:
                raise ValueError(f"{self.name}: only histograms have buckets")
            return
        if not self.buckets:
            raise ValueError(f"histogram {self.name!r} needs buckets")
        if any(b <= a for a, b in zip(self.buckets, self.buckets[1:], strict=False)):
            raise ValueError(f"{self.name}: buckets must be strictly increasing")

    @property
    def exported_names(self) -> frozenset[str]:
        """Every sample name this metric produces in the text exposition."""
        if self.kind is MetricKind.COUNTER:
            base = self.name.removesuffix("_total")
            return frozenset({self.name, base + "_created"})
        if self.kind is MetricKind.HISTOGRAM:
            suffixes = ("_bucket", "_count", "_sum", "_created")
            return frozenset(self.name + s for s in suffixes)
        return frozenset({self.name})


class MetricCatalogue:
    """Metric declarations by name; declaring the same spec twice is harmless, a
    different spec under a taken name is an error (two meanings, one series)."""

    def __init__(self, specs: Iterable[MetricSpec] = ()) -> None:
        self._specs: dict[str, MetricSpec] = {}
        self._lock = threading.Lock()
        for spec in specs:
            self.declare(spec)

    def declare(self, spec: MetricSpec) -> MetricSpec:
        with self._lock:
            existing = self._specs.get(spec.name)
            if existing is not None and existing != spec:
                raise ValueError(f"metric {spec.name!r} is already declared differently")
            self._specs[spec.name] = spec
            return spec

    def get(self, name: str) -> MetricSpec | None:
        return self._specs.get(name)

    def __contains__(self, spec: object) -> bool:
        return isinstance(spec, MetricSpec) and self._specs.get(spec.name) == spec

    def __iter__(self) -> Iterator[MetricSpec]:
        return iter(list(self._specs.values()))

    def __len__(self) -> int:
        return len(self._specs)

    def exported_names(self) -> set[str]:
        return {name for spec in self for name in spec.exported_names}


_ST = ("service", "topic")

MESSAGES_CONSUMED = MetricSpec(
    "mindstream_messages_consumed_total",
    MetricKind.COUNTER,
    "Messages taken from a topic and handed to a handler.",
    _ST,
)
MESSAGES_PRODUCED = MetricSpec(
    "mindstream_messages_produced_total",
    MetricKind.COUNTER,
    "Messages published to a topic and acknowledged by the broker.",
    _ST,
)
HANDLER_FAILURES = MetricSpec(
    "mindstream_handler_failures_total",
    MetricKind.COUNTER,
    "Handler attempts that raised, by whether the error is retried or dead-lettered.",
    (*_ST, "kind"),
    allowed={"kind": FAILURE_KINDS},
)
DEAD_LETTERED = MetricSpec(
    "mindstream_dead_lettered_total",
    MetricKind.COUNTER,
    "Messages sent to <topic>.dlq, by why; topic is the topic they were consumed from.",
    (*_ST, "reason_kind"),
    allowed={"reason_kind": DEAD_LETTER_REASONS},
)
HANDLER_DURATION = MetricSpec(
    "mindstream_handler_duration_seconds",
    MetricKind.HISTOGRAM,
    "Time from handing a message to its handler to the handler's return or raise.",
    _ST,
    buckets=LATENCY_BUCKETS_SECONDS,
)
RETRIES = MetricSpec(
    "mindstream_retries_total",
    MetricKind.COUNTER,
    "Handler re-attempts after a transient failure.",
    _ST,
)

METRICS = MetricCatalogue(
    [MESSAGES_CONSUMED, MESSAGES_PRODUCED, HANDLER_FAILURES, DEAD_LETTERED, HANDLER_DURATION,
     RETRIES]
)  # fmt: skip
"""The platform's catalogue: the consumer-loop metrics plus whatever services declare."""


def declare_metric(spec: MetricSpec) -> MetricSpec:
    """Add a service's own metric to :data:`METRICS`; call it at module import."""
    return METRICS.declare(spec)


def exported_metric_names(catalogue: MetricCatalogue = METRICS) -> set[str]:
    """Every sample name the catalogue exports, with ``_total``/``_bucket``/``_count``/
    ``_sum``/``_created`` forms, for checking dashboards and alert rules against."""
    return catalogue.exported_names()


def normalise_label_value(value: str, allowed: frozenset[str] | None) -> str:
    """``value`` if it may be a label value, else :data:`OTHER`.

    With no allowed set the value is kept, cut to :data:`MAX_LABEL_VALUE_LENGTH`.
    """
    if allowed is not None:
        return value if value in allowed else OTHER
    return value[:MAX_LABEL_VALUE_LENGTH]


_Collector = Counter | Histogram | Gauge


class _Handle:
    def __init__(self, owner: ServiceMetrics, spec: MetricSpec, collector: _Collector) -> None:
        self._owner = owner
        self.spec = spec
        self._collector = collector

    def _child(self, labels: Mapping[str, str]) -> _Collector:
        if not self.spec.labels:
            if labels:
                raise ValueError(f"{self.spec.name} has no labels, got {sorted(labels)}")
            return self._collector
        values = self._owner.label_values(self.spec, labels)
        return self._collector.labels(*values)


class CounterHandle(_Handle):
    def inc(self, amount: float = 1.0, **labels: str) -> None:
        child = self._child(labels)
        assert isinstance(child, Counter)
        child.inc(amount)


class HistogramHandle(_Handle):
    def observe(self, value: float, **labels: str) -> None:
        child = self._child(labels)
        assert isinstance(child, Histogram)
        child.observe(value)


class GaugeHandle(_Handle):
    def set(self, value: float, **labels: str) -> None:
        child = self._child(labels)
        assert isinstance(child, Gauge)
        child.set(value)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        child = self._child(labels)
        assert isinstance(child, Gauge)
        child.inc(amount)

    def dec(self, amount: float = 1.0, **labels: str) -> None:
        child = self._child(labels)
        assert isinstance(child, Gauge)
        child.dec(amount)


_HANDLE_TYPES: dict[MetricKind, type[_Handle]] = {
    MetricKind.COUNTER: CounterHandle,
    MetricKind.HISTOGRAM: HistogramHandle,
    MetricKind.GAUGE: GaugeHandle,
}


class ServiceMetrics:
    """One service's metrics in its own registry.

    ``topics``, when given, is the allowed set of the ``topic`` label (the
    physical names the service consumes and produces, dead-letter topics
    included). ``clock`` times handlers; tests inject a fake one.
    """

    def __init__(
        self,
        service: str,
        *,
        topics: Iterable[str] | None = None,
        catalogue: MetricCatalogue = METRICS,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if not _LABEL.fullmatch(service):
            raise ValueError(f"service name {service!r} must match {_LABEL.pattern}")
        self.service = service
        self.registry = registry if registry is not None else CollectorRegistry()
        self._catalogue = catalogue
        self._topics = frozenset(topics) | {OTHER} if topics is not None else None
        self._clock = clock
        self._handles: dict[str, _Handle] = {}
        self._lock = threading.Lock()
        self._warned: set[tuple[str, str]] = set()
        self._consumed = self.counter(MESSAGES_CONSUMED)
        self._produced = self.counter(MESSAGES_PRODUCED)
        self._failures = self.counter(HANDLER_FAILURES)
        self._dead = self.counter(DEAD_LETTERED)
        self._duration = self.histogram(HANDLER_DURATION)
        self._retries = self.counter(RETRIES)

    # -- handles for any declared metric ------------------------------------

    def counter(self, spec: MetricSpec) -> CounterHandle:
        handle = self._handle(spec, MetricKind.COUNTER)
        assert isinstance(handle, CounterHandle)
        return handle

    def histogram(self, spec: MetricSpec) -> HistogramHandle:
        handle = self._handle(spec, MetricKind.HISTOGRAM)
        assert isinstance(handle, HistogramHandle)
        return handle

    def gauge(self, spec: MetricSpec) -> GaugeHandle:
        handle = self._handle(spec, MetricKind.GAUGE)
        assert isinstance(handle, GaugeHandle)
        return handle

    def _handle(self, spec: MetricSpec, kind: MetricKind) -> _Handle:
        if spec.kind is not kind:
            raise TypeError(f"{spec.name} is a {spec.kind}, not a {kind}")
        if spec not in self._catalogue:
            raise ValueError(
                f"{spec.name} is not in the catalogue: declare it with declare_metric() "
                "so dashboards and alerts can be checked against it"
            )
        with self._lock:
            handle = self._handles.get(spec.name)
            if handle is None:
                handle = _HANDLE_TYPES[kind](self, spec, self._create(spec))
                self._handles[spec.name] = handle
            return handle

    def _create(self, spec: MetricSpec) -> _Collector:
        if spec.kind is MetricKind.COUNTER:
            return Counter(spec.name, spec.help, spec.labels, registry=self.registry)
        if spec.kind is MetricKind.HISTOGRAM:
            assert spec.buckets is not None
            return Histogram(
                spec.name, spec.help, spec.labels, registry=self.registry, buckets=spec.buckets
            )
        return Gauge(spec.name, spec.help, spec.labels, registry=self.registry)

    def label_values(self, spec: MetricSpec, labels: Mapping[str, str]) -> list[str]:
        """The bounded values of ``spec``'s labels, in order; ``service`` is filled in.

        A missing or unknown label name is a programming error and raises
        ``ValueError``; a value outside the allowed set becomes ``"other"``.
        """
        given = dict(labels)
        if "service" in spec.labels:
            given.setdefault("service", self.service)
        unknown = set(given) - set(spec.labels)
        missing = set(spec.labels) - set(given)
        if unknown or missing:
            raise ValueError(
                f"{spec.name} labels: missing {sorted(missing)}, unknown {sorted(unknown)}"
            )
        values: list[str] = []
        for label in spec.labels:
            raw = given[label]
            allowed = spec.allowed.get(label)
            if allowed is None and label == "topic":
                allowed = self._topics
            value = normalise_label_value(raw, allowed)
            if value != raw:
                self._warn_once(spec.name, label, raw)
            values.append(value)
        return values

    def _warn_once(self, metric: str, label: str, raw: str) -> None:
        if (metric, label) in self._warned:
            return
        self._warned.add((metric, label))
        _log.warning(
            "label value outside its allowed set was normalised",
            extra={"metric": metric, "label": label, "value": raw[:MAX_LABEL_VALUE_LENGTH]},
        )

    # -- the consumer loop's metrics ------------------------------------------

    def consumed(self, topic: str) -> None:
        self._consumed.inc(topic=topic)

    def produced(self, topic: str, count: int = 1) -> None:
        self._produced.inc(count, topic=topic)

    def handler_failed(self, topic: str, kind: FailureKind) -> None:
        self._failures.inc(topic=topic, kind=kind)

    def dead_lettered(self, topic: str, reason_kind: DeadLetterReason) -> None:
        self._dead.inc(topic=topic, reason_kind=reason_kind)

    def retried(self, topic: str) -> None:
        self._retries.inc(topic=topic)

    def observe_handler(self, topic: str, seconds: float) -> None:
        self._duration.observe(seconds, topic=topic)

    @contextmanager
    def time_handler(self, topic: str) -> Iterator[None]:
        """Record the handler's duration, whether it returns or raises."""
        start = self._clock()
        try:
            yield
        finally:
            self.observe_handler(topic, self._clock() - start)
