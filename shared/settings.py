"""Settings every service shares: where Kafka and MongoDB are, and how to reach them.

Environment variables are read only here, at the entrypoint, through
pydantic-settings. ``KAFKA_BOOTSTRAP_SERVERS`` and ``MONGODB_URI`` are
deliberately unprefixed: one pair points the whole system (services, CLI,
tests) at a cluster. Each service adds its own settings class with its own
prefix (``MINDSTREAM_REASONING_`` ...). Secrets are ``SecretStr`` so they never
print.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["KafkaSettings", "MongoSettings", "ObservabilitySettings"]


class KafkaSettings(BaseSettings):
    """Kafka connection settings; SASL/TLS values come from Kubernetes Secrets via env."""

    model_config = SettingsConfigDict(env_prefix="KAFKA_", extra="ignore")

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    topic_prefix: str = Field(
        default="",
        validation_alias="MINDSTREAM_TOPIC_PREFIX",
        description="prepended to every topic name; tests use a unique one per test",
        pattern=r"^[A-Za-z0-9._-]{0,64}$",
    )
    linger_ms: int = Field(default=2, ge=0, le=1000)
    request_timeout_ms: int = Field(default=15000, ge=1000)


class MongoSettings(BaseSettings):
    """MongoDB connection; the URI may carry credentials, so it is a secret."""

    model_config = SettingsConfigDict(env_prefix="MONGODB_", extra="ignore")

    uri: SecretStr = SecretStr("mongodb://127.0.0.1:27017")
    database: str = Field(default="mindstream", validation_alias="MINDSTREAM_DB",
                          pattern=r"^[A-Za-z0-9_-]{1,63}$")
    timeout_ms: int = Field(default=5000, ge=100)


class ObservabilitySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MINDSTREAM_", extra="ignore")

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    http_host: str = "0.0.0.0"  # noqa: S104 - probes and scrapes come from outside the pod
