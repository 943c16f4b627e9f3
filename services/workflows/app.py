"""Wiring of the workflows service: topics in, handlers, stores, sweeper. No logic here."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from schemas.topics import (
    RUNS_COMPLETED,
    TOOLS_RESULTS,
    WORKFLOWS,
    WORKFLOWS_COMMANDS,
    WORKFLOWS_REQUESTED,
    TopicSpec,
)
from services.workflows.definitions import WorkflowBook
from services.workflows.handlers import (
    Orchestrator,
    OrchestratorConfig,
    is_step_completion,
    is_step_result,
)
from services.workflows.settings import WorkflowsSettings
from services.workflows.store import INDEXES, WorkflowRunStore, WorkflowVersionStore
from shared.kafka.consumer import Handler
from shared.pacing import run_paced
from shared.service import ServiceRuntime
from shared.settings import KafkaSettings, MongoSettings

__all__ = ["WorkflowsApp", "assemble", "build"]

log = logging.getLogger("mindstream.workflows")


@dataclass
class WorkflowsApp:
    runtime: ServiceRuntime
    orchestrator: Orchestrator
    book: WorkflowBook


def assemble(
    settings: WorkflowsSettings,
    kafka: KafkaSettings,
    mongo: MongoSettings,
    *,
    http_host: str = "127.0.0.1",
    http_port: int | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> WorkflowsApp:
    runtime = ServiceRuntime(
        "workflows", kafka=kafka, mongo=mongo, http_host=http_host,
        http_port=settings.http_port if http_port is None else http_port,
    )
    runtime.indexes(INDEXES)
    book = WorkflowBook(WorkflowVersionStore(runtime.db))
    orchestrator = Orchestrator(
        store=WorkflowRunStore(runtime.db), publisher=runtime.publisher, book=book,
        config=OrchestratorConfig(outbox_redrive_after_s=settings.outbox_redrive_after_s),
        clock=clock,
    )

    async def load_definitions() -> None:
        await book.start(kafka)

    async def sweep_once() -> None:
        swept = await orchestrator.sweep()
        if swept:
            log.info("deadline sweeper failed %d workflow run(s)", swept)

    async def sweep_forever() -> None:
        # Paced by its own duration: on FerretDB its queries scan every workflow run stored.
        await run_paced(sweep_once, interval_s=settings.sweep_interval_s,
                        max_share=settings.sweep_max_share)

    runtime.on_start(load_definitions)
    runtime.consume(WORKFLOWS, book.handle, group=None)
    # Every run's completion and every tool result pass here; only those of workflow
    # steps concern this service, so the others skip the processed-message ledger.
    inputs: list[tuple[TopicSpec, Handler[Any], Callable[[Any], bool] | None]] = [
        (WORKFLOWS_REQUESTED, orchestrator.on_requested, None),
        (WORKFLOWS_COMMANDS, orchestrator.on_command, None),
        (RUNS_COMPLETED, orchestrator.on_run_completed, is_step_completion),
        (TOOLS_RESULTS, orchestrator.on_tool_result, is_step_result),
    ]
    for spec, handler, accepts in inputs:
        runtime.consume(spec, handler, concurrency=settings.consumer_concurrency, accepts=accepts)
    runtime.background(sweep_forever)
    return WorkflowsApp(runtime, orchestrator, book)


def build(
    settings: WorkflowsSettings,
    kafka: KafkaSettings,
    mongo: MongoSettings,
    *,
    http_host: str = "127.0.0.1",
    http_port: int | None = None,
) -> ServiceRuntime:
    return assemble(settings, kafka, mongo, http_host=http_host, http_port=http_port).runtime
