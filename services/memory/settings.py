"""Memory service settings, read once at the entrypoint (env prefix ``MINDSTREAM_MEMORY_``).

The model is optional. Without ``MINDSTREAM_MEMORY_MODEL_BASE_URL`` summaries
are extractive and facts come from rules; without
``MINDSTREAM_MEMORY_EMBEDDINGS_BASE_URL`` knowledge search is BM25 only. Both
degrade, never fail, so a fresh install works with no model at all.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.memory.window import WindowPolicy

__all__ = ["MemoryServiceSettings"]


class MemoryServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MINDSTREAM_MEMORY_", extra="ignore")

    http_port: int = Field(default=8083, ge=0, le=65535)

    # Chat model for summaries and fact extraction (optional).
    model_base_url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    model_api_key: SecretStr | None = None
    model_name: str = Field(default="gpt-4o-mini", min_length=1)
    model_timeout_s: float = Field(default=30.0, gt=0)
    model_breaker_failures: int = Field(default=5, ge=1)
    model_breaker_reset_s: float = Field(default=30.0, gt=0)

    # Embeddings for knowledge search (optional; base_url may equal the model's).
    embeddings_base_url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    embeddings_api_key: SecretStr | None = None
    embeddings_model: str = Field(default="text-embedding-3-small", min_length=1)
    embeddings_batch_size: int = Field(default=64, ge=1, le=2048)

    # Consumers: partitions handled in parallel in one process (order per partition kept).
    consumer_concurrency: int = Field(default=4, ge=1, le=64)

    # History window and running summary (defaults; an agent's own limits cut further).
    window_max_messages: int = Field(default=40, ge=1, le=500)
    window_max_tokens: int = Field(default=3000, ge=1)
    summary_trigger: int = Field(default=10, ge=1)
    summary_max_share: float = Field(default=0.3, gt=0.0, lt=1.0)
    summary_max_chars: int = Field(default=1500, ge=100, le=32_000)

    # Context assembly.
    context_memories: int = Field(default=8, ge=0, le=100)
    context_memory_max_tokens: int = Field(default=500, ge=0)
    context_knowledge_hits: int = Field(default=4, ge=0, le=50)
    context_knowledge_max_tokens: int = Field(default=1500, ge=0)
    history_load_limit: int = Field(
        default=600, ge=10, le=5000, description="Most session messages read per assembly."
    )

    # The session run queue (services.memory.run_queue).
    run_queue_grace_s: float = Field(
        default=120.0, gt=0,
        description="Past a run's deadline, how long it may still hold its session "
        "before the next run starts anyway (reasoning fails it 30 s past the deadline).",
    )
    run_queue_sweep_interval_s: float = Field(default=5.0, gt=0)

    # Learning and knowledge.
    learn_min_confidence: float = Field(default=0.5, ge=0.0, le=1.0)
    memories_per_user_limit: int = Field(default=1000, ge=10)
    chunk_max_tokens: int = Field(default=300, ge=8)
    chunk_overlap_tokens: int = Field(default=40, ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> MemoryServiceSettings:
        if self.chunk_overlap_tokens >= self.chunk_max_tokens:
            raise ValueError("chunk_overlap_tokens must be smaller than chunk_max_tokens")
        return self

    @property
    def run_queue_grace(self) -> timedelta:
        return timedelta(seconds=self.run_queue_grace_s)

    def window_policy(self) -> WindowPolicy:
        return WindowPolicy(
            max_messages=self.window_max_messages,
            max_tokens=self.window_max_tokens,
            summary_trigger=self.summary_trigger,
            max_summary_share=self.summary_max_share,
        )
