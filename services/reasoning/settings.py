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
from services.reasoning.overload import OverloadConfig
from shared.resilience import RetryPolicy

__all__ = ["ReasoningSettings", "model_config_for", "overload_config_for"]

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
    sweep_max_share: float = Field(
        default=0.05, gt=0, le=1,
        description="the sweeper waits long enough to take at most this share of the time "
        "(its query scans the collection on FerretDB)",
    )
    outbox_redrive_after_s: float = Field(
        default=10.0, gt=0, description="re-publish an outbox left unpublished this long"
    )
    model_claim_lease_s: float = Field(
        default=30.0, gt=0,
        description="lease of a model-call claim (renewed while the call runs); a run whose "
        "claimant died is driven again this long after its last renewal",
    )
    # Overload protection (services/reasoning/overload.py); off unless enabled.
    overload_enabled: bool = Field(default=False, description="adaptive limit + early refusal")
    overload_min_concurrency: int = Field(default=1, ge=1)
    overload_max_concurrency: int = Field(default=16, ge=1, description="model calls in flight")
    overload_target_latency_s: float = Field(default=20.0, gt=0, description="slower = cut limit")
    overload_queue_high: int = Field(default=64, ge=0, description="waiting first calls, high")
    overload_queue_normal: int = Field(default=16, ge=0)
    overload_queue_low: int = Field(default=0, ge=0, description="0: refused when saturated")
    overload_max_wait_high_s: float = Field(default=60.0, gt=0)
    overload_max_wait_normal_s: float = Field(default=10.0, gt=0)
    overload_max_wait_low_s: float = Field(default=2.0, gt=0)
    follow_control: bool = Field(
        default=True, description="follow the operating mode (degraded: shed extras)"
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


def overload_config_for(settings: ReasoningSettings) -> OverloadConfig | None:
    """The overload protection to apply, or None when it is off."""
    if not settings.overload_enabled:
        return None
    return OverloadConfig(
        min_limit=min(settings.overload_min_concurrency, settings.overload_max_concurrency),
        max_limit=settings.overload_max_concurrency,
        target_latency_s=settings.overload_target_latency_s,
        queue={"high": settings.overload_queue_high, "normal": settings.overload_queue_normal,
               "low": settings.overload_queue_low},
        max_wait_s={"high": settings.overload_max_wait_high_s,
                    "normal": settings.overload_max_wait_normal_s,
                    "low": settings.overload_max_wait_low_s},
    )
