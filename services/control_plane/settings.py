"""Control-plane settings (env prefix ``MINDSTREAM_CONTROL_PLANE_``), read at the entrypoint only.

Two ports: ``http_port`` serves the management API and the dashboard
(uvicorn); ``probe_port`` serves ``/healthz``, ``/readyz`` and ``/metrics``
from the shared :class:`~shared.observability.http.HealthServer`, like every
other service. Keeping probes apart means a flood of API traffic cannot make
Kubernetes restart the pod, and scrapes never need a token.
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ControlPlaneSettings"]


class ControlPlaneSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MINDSTREAM_CONTROL_PLANE_", extra="ignore")

    http_port: int = Field(default=8080, ge=0, le=65535)
    probe_port: int = Field(default=8085, ge=0, le=65535)
    bootstrap_token: SecretStr | None = Field(
        default=None,
        description="An admin token accepted until real tokens exist; only its hash is kept.",
        min_length=24,
    )
    audit_concurrency: int = Field(default=3, ge=1, le=32)
    cors_origins: list[str] = Field(default_factory=list)
    # Canary gate (services/control_plane/canary.py): judged per window, rolled back on a streak.
    canary_enabled: bool = Field(default=True, description="judge active canaries")
    canary_window_s: float = Field(default=300.0, gt=0)
    canary_failing_windows: int = Field(default=2, ge=1, le=100)
    canary_min_runs: int = Field(default=5, ge=1)
    canary_max_failure_rate_increase: float = Field(default=0.05, ge=0.0, le=1.0)
    canary_max_latency_ratio: float = Field(default=1.5, gt=0)
    canary_max_cost_ratio: float = Field(default=1.5, gt=0)
