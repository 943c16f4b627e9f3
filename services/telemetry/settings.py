"""Settings of the telemetry service (env prefix ``MINDSTREAM_TELEMETRY_``).

Lists and mappings are JSON in the environment, e.g.::

    MINDSTREAM_TELEMETRY_PRICES='{"gpt-4o-mini": {"prompt_per_1k": 0.00015,
                                                  "completion_per_1k": 0.0006}}'
    MINDSTREAM_TELEMETRY_TOOL_ALLOWLIST='["calculator", "http_fetch"]'
    MINDSTREAM_TELEMETRY_LAG_GROUPS='["mindstream-reasoning", "mindstream-tools"]'

Lists also take a comma-separated form.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from services.telemetry.pricing import ModelPrice, PriceTable

__all__ = ["DEFAULT_LAG_GROUPS", "TelemetrySettings"]

# Entries ending in "-" or "." are prefixes: services keep one group per topic.
DEFAULT_LAG_GROUPS = ("mindstream-",)

_List = Annotated[list[str], NoDecode]


def _split(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


class TelemetrySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MINDSTREAM_TELEMETRY_", extra="ignore")

    http_port: int = Field(default=8084, ge=0, le=65535)
    prices: dict[str, ModelPrice] = Field(
        default_factory=dict, description="model -> {prompt_per_1k, completion_per_1k}; '*' = any"
    )
    tool_allowlist: _List = Field(
        default_factory=list, description="tool label values; empty admits the first max_tools"
    )
    max_tools: int = Field(default=50, ge=1, le=1000)
    max_agents: int = Field(default=100, ge=1, le=1000)
    max_models: int = Field(default=20, ge=1, le=200)
    lag_groups: _List = Field(default_factory=lambda: list(DEFAULT_LAG_GROUPS))
    lag_poll_interval_s: float = Field(default=15.0, gt=0, le=3600)
    rollup_retention_days: int = Field(default=30, ge=1, le=3650)
    rollup_max_samples: int = Field(
        default=500, ge=1, le=10_000, description="latency samples kept per agent-minute"
    )
    correlation_cache_size: int = Field(
        default=20_000, ge=100, le=1_000_000,
        description="runs and tool calls remembered to pair start and end events",
    )
    otlp_endpoint: str | None = Field(
        default=None, description="OTLP/HTTP collector; unset uses OTEL_EXPORTER_OTLP_ENDPOINT"
    )

    @field_validator("tool_allowlist", "lag_groups", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _split(value)

    def price_table(self) -> PriceTable:
        return PriceTable(self.prices)
