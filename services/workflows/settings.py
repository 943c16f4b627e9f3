"""Workflows service settings, read once at the entrypoint (env prefix ``MINDSTREAM_WORKFLOWS_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["WorkflowsSettings"]


class WorkflowsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MINDSTREAM_WORKFLOWS_", extra="ignore")

    http_port: int = Field(default=8086, ge=0, le=65535)
    log_level: str | None = None  # unset: MINDSTREAM_LOG_LEVEL
    consumer_concurrency: int = Field(
        default=4, ge=1, le=64, description="group members per input topic in this process"
    )
    sweep_interval_s: float = Field(default=1.0, gt=0, description="deadline sweeper period")
    sweep_max_share: float = Field(
        default=0.05, gt=0, le=1,
        description="the sweeper waits long enough to take at most this share of the time "
        "(its queries scan the collection on FerretDB)",
    )
    outbox_redrive_after_s: float = Field(
        default=10.0, gt=0, description="re-publish an outbox left unpublished this long"
    )
