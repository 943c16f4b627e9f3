"""Wiring of the telemetry service: three consumers, the broker monitor, the rollup sweeper.

Telemetry reads ``runs.events``, ``tools.results`` and ``runs.completed``
in its own consumer group and exports what it learns on the runtime's
``/metrics``; it publishes nothing. :func:`build_app` returns the parts so
tests can reach the monitor and handlers; :func:`build` is the usual
runtime-only entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from schemas.topics import RUNS_COMPLETED, RUNS_EVENTS, TOOLS_RESULTS
from services.telemetry.broker_monitor import BrokerMonitor
from services.telemetry.handlers import Telemetry
from services.telemetry.labels import BoundedLabel
from services.telemetry.rollups import RollupStore
from services.telemetry.settings import TelemetrySettings
from services.telemetry.store import INDEXES
from shared.service import ServiceRuntime
from shared.settings import KafkaSettings, MongoSettings

__all__ = ["TelemetryApp", "build", "build_app"]



@dataclass(frozen=True)
class TelemetryApp:
    runtime: ServiceRuntime
    telemetry: Telemetry
    monitor: BrokerMonitor
    rollups: RollupStore


def build_app(
    settings: TelemetrySettings,
    kafka: KafkaSettings,
    mongo: MongoSettings,
    *,
    http_host: str = "127.0.0.1",
    http_port: int | None = None,
) -> TelemetryApp:
    runtime = ServiceRuntime(
        "telemetry", kafka=kafka, mongo=mongo, http_host=http_host,
        http_port=settings.http_port if http_port is None else http_port,
    )
    rollups = RollupStore(
        runtime.db, retention=timedelta(days=settings.rollup_retention_days),
        max_samples=settings.rollup_max_samples,
    )
    telemetry = Telemetry(
        runtime.metrics, settings.price_table(), rollups,
        agents=BoundedLabel(settings.max_agents),
        models=BoundedLabel(settings.max_models),
        tools=BoundedLabel(settings.max_tools, settings.tool_allowlist),
        cache_size=settings.correlation_cache_size,
    )
    monitor = BrokerMonitor(kafka, runtime.metrics, settings.lag_groups,
                            interval_s=settings.lag_poll_interval_s)
    runtime.indexes(INDEXES)
    runtime.on_start(monitor.start)
    runtime.on_stop(monitor.stop)
    # Events and tool results only move in-process Prometheus series, which start
    # from zero with the process anyway; a processed-message ledger would cost two
    # database round trips per event (most of this service's database load) to
    # guard against the rare redelivery after a rebalance. Completed runs write
    # the durable rollups: those stay deduplicated.
    runtime.consume(RUNS_EVENTS, telemetry.on_run_event, dedupe=False)
    runtime.consume(TOOLS_RESULTS, telemetry.on_tool_result, dedupe=False)
    runtime.consume(RUNS_COMPLETED, telemetry.on_run_completed)
    runtime.background(monitor.run)
    return TelemetryApp(runtime, telemetry, monitor, rollups)


def build(
    settings: TelemetrySettings,
    kafka: KafkaSettings,
    mongo: MongoSettings,
    *,
    http_host: str = "127.0.0.1",
    http_port: int | None = None,
) -> ServiceRuntime:
    return build_app(settings, kafka, mongo, http_host=http_host, http_port=http_port).runtime
