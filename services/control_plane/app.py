"""Wiring: consumers (audit log, views) and the API server in one process.

Consumers:

- ``mindstream.audit.v1`` -> the hash-chained ``audit_log`` (group
  ``mindstream-control-plane``; several partitions and replicas append
  safely, see :mod:`services.control_plane.audit_chain`);
- ``mindstream.runs.events.v1`` and ``mindstream.runs.completed.v1`` -> the
  runs view;
- ``mindstream.workflows.events.v1`` -> the workflow runs view;
- ``mindstream.agents.v1`` and ``mindstream.workflows.v1`` -> the agents view
  and every workflow definition version (no group: every replica reads the
  whole compacted topic).

The API (uvicorn, ``http_port``, default 8080) starts after the broker, so
it can publish from its first request; probes and metrics stay on the
runtime's own port (``probe_port``, default 8085).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import FastAPI

from schemas.topics import AGENTS, AUDIT, RUNS_COMPLETED, RUNS_EVENTS, WORKFLOWS, WORKFLOWS_EVENTS
from services.control_plane.api import ApiContext, create_api
from services.control_plane.canary import INDEXES as CANARY_INDEXES
from services.control_plane.canary import CanaryMonitor, gates_from
from services.control_plane.evals import INDEXES as EVAL_INDEXES
from services.control_plane.handlers import AuditLogHandler
from services.control_plane.server import ApiServer
from services.control_plane.settings import ControlPlaneSettings
from services.control_plane.store import INDEXES
from services.control_plane.tokens import TokenStore
from services.control_plane.views import AgentsView, RunsView
from services.control_plane.workflow_view import WorkflowsView
from shared.service import ServiceRuntime
from shared.settings import KafkaSettings, MongoSettings

__all__ = ["ControlPlane", "build", "build_control_plane"]



@dataclass(frozen=True)
class ControlPlane:
    runtime: ServiceRuntime
    api: FastAPI
    context: ApiContext
    server: ApiServer


def build_control_plane(
    settings: ControlPlaneSettings, kafka: KafkaSettings, mongo: MongoSettings, *,
    http_host: str = "127.0.0.1", http_port: int | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> ControlPlane:
    runtime = ServiceRuntime("control-plane", kafka=kafka, mongo=mongo, http_host=http_host,
                             http_port=settings.probe_port)
    runtime.indexes(INDEXES)
    runtime.indexes(EVAL_INDEXES)
    runtime.indexes(CANARY_INDEXES)
    bootstrap = settings.bootstrap_token.get_secret_value() if settings.bootstrap_token else None
    context = ApiContext(db=runtime.db, publisher=runtime.publisher,
                         tokens=TokenStore(runtime.db, bootstrap_token=bootstrap), clock=clock)
    runtime.consume(AUDIT, AuditLogHandler(runtime.db).handle,
                    concurrency=settings.audit_concurrency)
    runs = RunsView(runtime.db)
    # The views are idempotent writes (see views.py), like the tools call ledger: a
    # processed-message ledger would only add two writes per event to the busiest consumer.
    runtime.consume(RUNS_EVENTS, runs.handle_event, dedupe=False)
    runtime.consume(RUNS_COMPLETED, runs.handle_completed, dedupe=False)
    runtime.consume(AGENTS, AgentsView(runtime.db).handle, group=None)
    workflows = WorkflowsView(runtime.db)
    runtime.consume(WORKFLOWS_EVENTS, workflows.handle_event, dedupe=False)
    runtime.consume(WORKFLOWS, workflows.handle_definition, group=None)
    if settings.canary_enabled:
        runtime.background(CanaryMonitor(runtime.db, runtime.publisher, gates_from(settings),
                                         clock=clock).run)
    api = create_api(context)
    server = ApiServer(api, http_host, settings.http_port if http_port is None else http_port)
    runtime.on_start(server.bind)
    runtime.background(server.serve)
    runtime.on_stop(server.close)
    return ControlPlane(runtime, api, context, server)


def build(settings: ControlPlaneSettings, kafka: KafkaSettings, mongo: MongoSettings, *,
          http_host: str = "127.0.0.1", http_port: int | None = None) -> ServiceRuntime:
    return build_control_plane(settings, kafka, mongo, http_host=http_host,
                               http_port=http_port).runtime
