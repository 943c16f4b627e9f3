"""Wiring of the reasoning service: topics in, handlers, stores, sweeper. No logic here."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from schemas.topics import (
    AGENTS,
    RUNS_COMMANDS,
    RUNS_COMPLETED,
    RUNS_READY,
    TOOLS_RESULTS,
    TopicSpec,
)
from services.reasoning.agents import AgentBook
from services.reasoning.handlers import Reasoner, ReasonerConfig, is_child_completion
from services.reasoning.model import ModelClient
from services.reasoning.protection import protect
from services.reasoning.settings import ReasoningSettings, model_config_for
from services.reasoning.store import INDEXES, AgentVersionStore, RunStore
from services.reasoning.toolbox import ToolCatalog
from shared.agent_registry import AgentRegistry
from shared.kafka.consumer import Handler
from shared.pacing import run_paced
from shared.service import ServiceRuntime
from shared.settings import KafkaSettings, MongoSettings

__all__ = ["ReasoningApp", "assemble", "build"]

log = logging.getLogger("mindstream.reasoning")


@dataclass
class ReasoningApp:
    """The runtime plus the parts tests and operators may want to look at."""

    runtime: ServiceRuntime
    reasoner: Reasoner
    agents: AgentBook
    model: ModelClient


def assemble(
    settings: ReasoningSettings,
    kafka: KafkaSettings,
    mongo: MongoSettings,
    *,
    http_host: str = "127.0.0.1",
    http_port: int | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> ReasoningApp:
    runtime = ServiceRuntime(
        "reasoning", kafka=kafka, mongo=mongo, http_host=http_host,
        http_port=settings.http_port if http_port is None else http_port,
    )
    runtime.indexes(INDEXES)
    registry = AgentRegistry()
    book = AgentBook(registry, AgentVersionStore(runtime.db))
    model = ModelClient(model_config_for(settings))
    reasoner = Reasoner(
        store=RunStore(runtime.db), publisher=runtime.publisher, agents=registry, model=model,
        catalog=ToolCatalog.discover(settings.tool_modules),
        config=ReasonerConfig(
            delta_flush_ms=settings.delta_flush_ms, delta_flush_chars=settings.delta_flush_chars,
            outbox_redrive_after_s=settings.outbox_redrive_after_s,
            model_claim_s=settings.model_claim_lease_s,
        ),
        clock=clock,
    )

    async def load_agents() -> None:
        await book.start(kafka)

    async def sweep_once() -> None:
        swept = await reasoner.sweep()
        if swept:
            log.info("deadline sweeper failed %d run(s)", swept)

    async def sweep_forever() -> None:
        # Paced by its own duration: on FerretDB its query scans every run stored.
        await run_paced(sweep_once, interval_s=settings.sweep_interval_s,
                        max_share=settings.sweep_max_share)

    runtime.on_start(load_agents)
    runtime.consume(AGENTS, book.handle, group=None)
    protect(reasoner, runtime, settings)  # overload protection and the operating mode
    inputs: list[tuple[TopicSpec, Handler[Any], Callable[[Any], bool] | None]] = [
        (RUNS_READY, reasoner.on_ready, None),
        (TOOLS_RESULTS, reasoner.on_tool_result, None),
        (RUNS_COMMANDS, reasoner.on_command, None),
        # Every run's completion passes here; only a child's concerns reasoning (its
        # parent), so the others skip the processed-message ledger's two round trips.
        (RUNS_COMPLETED, reasoner.on_run_completed, is_child_completion),
    ]
    for spec, handler, accepts in inputs:
        runtime.consume(spec, handler, concurrency=settings.consumer_concurrency, accepts=accepts)
    runtime.background(sweep_forever)
    runtime.on_stop(model.aclose)
    return ReasoningApp(runtime, reasoner, book, model)


def build(
    settings: ReasoningSettings,
    kafka: KafkaSettings,
    mongo: MongoSettings,
    *,
    http_host: str = "127.0.0.1",
    http_port: int | None = None,
) -> ServiceRuntime:
    return assemble(settings, kafka, mongo, http_host=http_host, http_port=http_port).runtime
