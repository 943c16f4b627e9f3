"""The memory service's own metrics, declared once at import (see shared.observability.metrics)."""

from __future__ import annotations

from shared.observability.metrics import (
    LATENCY_BUCKETS_SECONDS,
    MetricKind,
    MetricSpec,
    declare_metric,
)

__all__ = [
    "CONTEXT_ASSEMBLY", "KNOWLEDGE_HITS", "MEMORIES_LEARNED", "MODEL_FALLBACKS", "RUNS_QUEUED",
]

CONTEXT_ASSEMBLY = declare_metric(
    MetricSpec(
        "mindstream_memory_context_assembly_seconds",
        MetricKind.HISTOGRAM,
        "Time to assemble a run's context (history, summary, memories, knowledge).",
        ("service",),
        buckets=LATENCY_BUCKETS_SECONDS,
    )
)
MEMORIES_LEARNED = declare_metric(
    MetricSpec(
        "mindstream_memory_memories_learned_total",
        MetricKind.COUNTER,
        "Memory writes about users: added, updated (a correction) or deleted.",
        ("service", "action"),
        allowed={"action": frozenset({"added", "updated", "deleted"})},
    )
)
KNOWLEDGE_HITS = declare_metric(
    MetricSpec(
        "mindstream_memory_knowledge_hits_total",
        MetricKind.COUNTER,
        "Knowledge chunks returned, by use: a knowledge query or a run's context.",
        ("service", "use"),
        allowed={"use": frozenset({"query", "context"})},
    )
)
MODEL_FALLBACKS = declare_metric(
    MetricSpec(
        "mindstream_memory_model_fallbacks_total",
        MetricKind.COUNTER,
        "Model calls that failed and fell back to rules or extractive summaries.",
        ("service", "purpose"),
        allowed={"purpose": frozenset({"summary", "extraction"})},
    )
)
RUNS_QUEUED = declare_metric(
    MetricSpec(
        "mindstream_memory_runs_queued_total",
        MetricKind.COUNTER,
        "Runs that waited for their session's previous run (queued), and previous runs "
        "that never ended and were passed after their deadline (abandoned).",
        ("service", "outcome"),
        allowed={"outcome": frozenset({"queued", "abandoned"})},
    )
)
