"""Wiring of the memory service: store, knowledge base, models, consumers, probes.

``build`` is what ``__main__`` and tests call; ``wire`` returns the same
runtime together with the pieces tests want to reach (handlers, store,
knowledge base, registry) without reaching into the runtime.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.topics import (
    AGENTS,
    CONTROL,
    KNOWLEDGE_DOCUMENTS,
    KNOWLEDGE_QUERIES,
    RUNS_COMMANDS,
    RUNS_COMPLETED,
    RUNS_REQUESTED,
)
from services.memory.handlers import MemoryHandlers
from services.memory.knowledge import KnowledgeBase
from services.memory.learning import Extractor, ModelExtractor, RuleExtractor
from services.memory.metrics import MODEL_FALLBACKS
from services.memory.model_client import ChatModel, make_openai_client
from services.memory.retrieval import Embedder, OpenAIEmbedder
from services.memory.run_queue import INDEXES as QUEUE_INDEXES
from services.memory.run_queue import RunQueue
from services.memory.settings import MemoryServiceSettings
from services.memory.store import INDEXES, MemoryStore
from services.memory.summarizer import ExtractiveSummarizer, ModelSummarizer, Summarizer
from shared.agent_registry import AgentRegistry
from shared.audit import AuditEmitter
from shared.control_state import ControlView
from shared.pacing import run_paced
from shared.resilience import CircuitBreaker
from shared.service import ServiceRuntime
from shared.settings import KafkaSettings, MongoSettings

__all__ = ["MemoryApp", "build", "wire"]

SERVICE = "memory"


@dataclass(frozen=True)
class MemoryApp:
    runtime: ServiceRuntime
    handlers: MemoryHandlers
    store: MemoryStore
    knowledge: KnowledgeBase
    registry: AgentRegistry


def _models(
    settings: MemoryServiceSettings, runtime: ServiceRuntime
) -> tuple[Extractor, Summarizer, Embedder | None]:
    fallbacks = runtime.metrics.counter(MODEL_FALLBACKS)
    extractor: Extractor = RuleExtractor()
    summarizer: Summarizer = ExtractiveSummarizer(max_chars=settings.summary_max_chars)
    if settings.model_base_url:
        key = settings.model_api_key.get_secret_value() if settings.model_api_key else None
        client = make_openai_client(settings.model_base_url, key, timeout=settings.model_timeout_s)
        runtime.on_stop(client.close)
        model = ChatModel(
            client=client, model=settings.model_name, timeout=settings.model_timeout_s,
            breaker=CircuitBreaker(f"{SERVICE}-model", settings.model_breaker_failures,
                                   settings.model_breaker_reset_s),
        )
        extractor = ModelExtractor(
            model, on_fallback=lambda _e: fallbacks.inc(purpose="extraction"))
        summarizer = ModelSummarizer(
            model, max_chars=settings.summary_max_chars,
            fallback=ExtractiveSummarizer(max_chars=settings.summary_max_chars),
            on_fallback=lambda _e: fallbacks.inc(purpose="summary"))
    embedder: Embedder | None = None
    if settings.embeddings_base_url:
        key = settings.embeddings_api_key.get_secret_value() if settings.embeddings_api_key else None
        eclient = make_openai_client(settings.embeddings_base_url, key,
                                     timeout=settings.model_timeout_s)
        runtime.on_stop(eclient.close)
        embedder = OpenAIEmbedder(
            client=eclient, model=settings.embeddings_model, timeout=settings.model_timeout_s,
            batch_size=settings.embeddings_batch_size,
            breaker=CircuitBreaker(f"{SERVICE}-embeddings", settings.model_breaker_failures,
                                   settings.model_breaker_reset_s),
        )
    return extractor, summarizer, embedder


def wire(
    settings: MemoryServiceSettings,
    kafka: KafkaSettings,
    mongo: MongoSettings,
    *,
    http_host: str = "127.0.0.1",
    http_port: int | None = None,
) -> MemoryApp:
    runtime = ServiceRuntime(
        SERVICE, kafka=kafka, mongo=mongo, http_host=http_host,
        http_port=settings.http_port if http_port is None else http_port,
    )
    runtime.indexes(INDEXES)
    runtime.indexes(QUEUE_INDEXES)
    store = MemoryStore(runtime.db)
    extractor, summarizer, embedder = _models(settings, runtime)
    knowledge = KnowledgeBase(
        store, embedder=embedder, chunk_max_tokens=settings.chunk_max_tokens,
        chunk_overlap_tokens=settings.chunk_overlap_tokens,
    )
    registry = AgentRegistry()
    control = ControlView()  # the operating mode: degraded sheds knowledge and learning
    handlers = MemoryHandlers(
        store=store, knowledge=knowledge, registry=registry, publisher=runtime.publisher,
        audit=AuditEmitter(runtime.publisher, SERVICE), metrics=runtime.metrics,
        settings=settings, extractor=extractor, summarizer=summarizer, control=control,
        queue=RunQueue(runtime.db),
    )

    async def load_agents() -> None:
        await registry.load(kafka)

    async def sweep_queue() -> None:
        # A waiting run whose predecessor never ended starts after the predecessor's
        # deadline; paced by its own duration (a scan on FerretDB).
        await run_paced(handlers.sequencer.sweep, interval_s=settings.run_queue_sweep_interval_s,
                        max_share=0.05)

    runtime.on_start(load_agents)
    runtime.background(sweep_queue)
    runtime.on_start(knowledge.refresh)  # a warm index before the first query
    runtime.consume(AGENTS, registry.handle, group=None)
    runtime.consume(CONTROL, control.handle, group=None)
    concurrency = settings.consumer_concurrency
    # Requests and queries only read and then publish under a deterministic id (a replay
    # re-publishes the same id, dropped downstream): the processed-message ledger would
    # add two round trips to every run for nothing. Writers keep it.
    for spec, handler, members, dedupe in (
        (RUNS_REQUESTED, handlers.on_run_requested, concurrency, False),
        (KNOWLEDGE_QUERIES, handlers.on_knowledge_query, concurrency, False),
        (RUNS_COMPLETED, handlers.on_run_completed, concurrency, True),
        (RUNS_COMMANDS, handlers.on_run_command, concurrency, False),
        (KNOWLEDGE_DOCUMENTS, handlers.on_document, 1, True),
    ):
        runtime.consume(spec, handler, concurrency=members, dedupe=dedupe)
    return MemoryApp(runtime, handlers, store, knowledge, registry)


def build(
    settings: MemoryServiceSettings,
    kafka: KafkaSettings,
    mongo: MongoSettings,
    *,
    http_host: str = "127.0.0.1",
    http_port: int | None = None,
) -> ServiceRuntime:
    return wire(settings, kafka, mongo, http_host=http_host, http_port=http_port).runtime
