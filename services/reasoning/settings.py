"""Reasoning service settings, read once at the entrypoint (env prefix ``MINDSTREAM_REASONING_``).

The model endpoint has a global default shared with the other services:
``MINDSTREAM_MODEL_BASE_URL`` and ``OPENAI_API_KEY`` are honoured when the
``MINDSTREAM_REASONING_`` variants are not set; an agent's ``model.base_url``
overrides the endpoint per agent. ``model_config_for`` turns settings into the plain
config the model client takes, so nothing below the entrypoint reads the environment.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.reasoning.model import ModelClientConfig
from shared.resilience import RetryPolicy

__all__ = ["ReasoningSettings", "model_config_for"]

_P = "MINDSTREAM_REASONING_"


class ReasoningSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=_P, extra="ignore", populate_by_name=True)

    http_port: int = Field(default=8081, ge=0, le=65535)
    log_level: str | None = None  # unset: MINDSTREAM_LOG_LEVEL

    model_base_url: str = Field(
        default="http://127.0.0.1:8400/v1",
        validation_alias=AliasChoices(
            f"{_P}MODEL_BASE_URL", "MINDSTREAM_MODEL_BASE_URL", "model_base_url"
        ),
        pattern=r"^https?://\S+$",
    )
    model_api_key: SecretStr = Field(
        default=SecretStr("unused"),
        validation_alias=AliasChoices(f"{_P}MODEL_API_KEY", "OPENAI_API_KEY", "model_api_key"),
    )
    model_call_timeout_s: float = Field(default=60.0, gt=0)
    model_total_timeout_s: float = Field(default=180.0, gt=0)
    model_max_attempts: int = Field(default=3, ge=1)
    model_retry_base_delay_s: float = Field(default=0.2, ge=0)
    model_retry_max_delay_s: float = Field(default=5.0, ge=0)
    model_max_concurrency: int = Field(default=16, ge=1)
    model_breaker_failure_threshold: int = Field(default=5, ge=1)
    model_breaker_reset_s: float = Field(default=30.0, gt=0)

    consumer_concurrency: int = Field(
        default=4, ge=1, le=64, description="group members per input topic in this process"
    )
    delta_flush_ms: float = Field(default=50.0, ge=0, description="model.delta batching window")
    delta_flush_chars: int = Field(default=32, ge=1, description="flush deltas at this size")
    sweep_interval_s: float = Field(default=1.0, gt=0, description="deadline sweeper period")
    outbox_redrive_after_s: float = Field(
        default=10.0, gt=0, description="re-publish an outbox left unpublished this long"
    )
    tool_modules: list[str] = Field(
        default_factory=lambda: [
            "services.tools.builtins.calculator",
            "services.tools.builtins.clock",
            "services.tools.builtins.http_fetch",
            "services.tools.builtins.transform",
        ],
        description="modules whose TOOLS describe tool schemas for the model",
    )


def model_config_for(settings: ReasoningSettings) -> ModelClientConfig:
    return ModelClientConfig(
        base_url=settings.model_base_url,
        api_key=settings.model_api_key.get_secret_value(),
        call_timeout_s=settings.model_call_timeout_s,
        total_timeout_s=settings.model_total_timeout_s,
        retry=RetryPolicy(
            max_attempts=settings.model_max_attempts,
            base_delay=settings.model_retry_base_delay_s,
            max_delay=settings.model_retry_max_delay_s,
        ),
        max_concurrency=settings.model_max_concurrency,
        breaker_failure_threshold=settings.model_breaker_failure_threshold,
        breaker_reset_s=settings.model_breaker_reset_s,
    )
