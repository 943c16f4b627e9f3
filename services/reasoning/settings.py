"""Reasoning service settings, read once at the entrypoint (env prefix ``REASONING_``).

Only the model-facing part lives here so far; Kafka and MongoDB settings join when the
service is wired. ``model_config_for`` turns settings into the plain config the model
client takes, so nothing below the entrypoint reads the environment.
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.reasoning.model import ModelClientConfig
from shared.resilience import RetryPolicy

__all__ = ["ReasoningSettings", "model_config_for"]


class ReasoningSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REASONING_", extra="ignore")

    model_base_url: str = "http://127.0.0.1:8400/v1"
    model_api_key: SecretStr = SecretStr("unused")
    model_call_timeout_s: float = Field(default=60.0, gt=0)
    model_total_timeout_s: float = Field(default=180.0, gt=0)
    model_max_attempts: int = Field(default=3, ge=1)
    model_retry_base_delay_s: float = Field(default=0.2, ge=0)
    model_retry_max_delay_s: float = Field(default=5.0, ge=0)
    model_max_concurrency: int = Field(default=16, ge=1)
    model_breaker_failure_threshold: int = Field(default=5, ge=1)
    model_breaker_reset_s: float = Field(default=30.0, gt=0)


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
