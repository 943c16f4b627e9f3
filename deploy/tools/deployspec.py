"""The one description of how mindstream is deployed; every generator reads it.

Ports are not repeated here: they are read from each service's settings class
(``http_port`` / ``probe_port`` defaults), so a port changed in a service is
changed in Kubernetes and compose by re-running the generators, and the drift
tests fail until someone does. Environment variable names are checked against
the settings classes too (:func:`known_env_names`).

What lives here is what only deployment knows: which endpoints a service
talks to, how big it is, how it scales, which env comes from which Secret.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr
from pydantic_settings import BaseSettings

__all__ = [
    "COMMON_ENV",
    "IMAGE",
    "K8S_SECRET_ENV",
    "PROVISION",
    "SERVICES",
    "TARGET_ENV",
    "UNPREFIXED_ENV",
    "Resources",
    "SecretRef",
    "ServiceSpec",
    "known_env_names",
    "secret_env_names",
    "settings_classes",
]

IMAGE = "ghcr.io/mindstream/mindstream"
UID = 10001
# FastStream's graceful timeout (shared.kafka.broker.make_broker) is 20 s; stop hooks,
# the Mongo client close and the pre-stop pause need the rest.
GRACEFUL_TIMEOUT_S = 20
TERMINATION_GRACE_S = 45
PRESTOP_SLEEP_S = 5


@dataclass(frozen=True)
class Resources:
    cpu_request: str
    memory_request: str
    cpu_limit: str
    memory_limit: str


@dataclass(frozen=True)
class SecretRef:
    """An env var filled from a Kubernetes Secret key; ``optional`` ones may be absent."""

    secret: str
    key: str
    optional: bool = False


@dataclass(frozen=True)
class ServiceSpec:
    name: str  # as `mindstream serve <name>` takes it
    settings: str  # "module:Class"
    resources: Resources
    replicas: int = 2
    max_replicas: int = 12  # never more than the partitions of the topics it consumes
    lag_threshold: int = 50  # KEDA: target lag per replica
    model_egress: bool = False  # calls an LLM / embeddings / external HTTP endpoint
    api_port_field: str | None = None  # a second, public port (control-plane API)
    probe_port_field: str = "http_port"
    secret_env: tuple[str, ...] = ()  # extra secret env names (from K8S_SECRET_ENV)
    consumes: tuple[str, ...] = ()  # topics read in a consumer group (KEDA scales on their lag)

    @property
    def module(self) -> str:
        return self.name.replace("-", "_")

    @property
    def groups(self) -> list[tuple[str, str]]:
        """(consumer group, topic) for each topic the service consumes in a group."""
        from schemas.topics import topic
        from shared.service import consumer_group

        return [(consumer_group(self.name, topic(name)), name) for name in self.consumes]

    def settings_class(self) -> type[BaseSettings]:
        module, cls = self.settings.split(":")
        found: type[BaseSettings] = getattr(importlib.import_module(module), cls)
        return found

    def _default(self, field_name: str) -> int:
        info = self.settings_class().model_fields[field_name]
        value = info.default
        if not isinstance(value, int):
            raise TypeError(f"{self.settings}.{field_name} has no integer default")
        return value

    @property
    def probe_port(self) -> int:
        return self._default(self.probe_port_field)

    @property
    def api_port(self) -> int | None:
        return None if self.api_port_field is None else self._default(self.api_port_field)

    @property
    def env_prefix(self) -> str:
        prefix: str = self.settings_class().model_config.get("env_prefix", "")
        return prefix

    def port_env(self) -> dict[str, str]:
        """The port settings written explicitly, so a changed default cannot move a probe."""
        env = {f"{self.env_prefix}{self.probe_port_field.upper()}": str(self.probe_port)}
        if self.api_port_field is not None:
            env[f"{self.env_prefix}{self.api_port_field.upper()}"] = str(self.api_port)
        return env


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec(
        name="control-plane",
        consumes=("mindstream.audit.v1", "mindstream.runs.events.v1", "mindstream.runs.completed.v1",
                  "mindstream.workflows.events.v1"),
        settings="services.control_plane.settings:ControlPlaneSettings",
        resources=Resources("200m", "256Mi", "1", "768Mi"),
        api_port_field="http_port",
        probe_port_field="probe_port",
        secret_env=("MINDSTREAM_CONTROL_PLANE_BOOTSTRAP_TOKEN",),
    ),
    ServiceSpec(
        name="reasoning",
        consumes=("mindstream.runs.ready.v1", "mindstream.tools.results.v1", "mindstream.runs.commands.v1",
                  "mindstream.runs.completed.v1"),
        settings="services.reasoning.settings:ReasoningSettings",
        resources=Resources("250m", "512Mi", "1", "1Gi"),
        model_egress=True,
        lag_threshold=20,
        secret_env=("OPENAI_API_KEY",),
    ),
    ServiceSpec(
        name="tools",
        consumes=("mindstream.tools.calls.v1",),
        settings="services.tools.settings:ToolsSettings",
        resources=Resources("200m", "256Mi", "1", "768Mi"),
        model_egress=True,
        lag_threshold=20,
    ),
    ServiceSpec(
        name="memory",
        consumes=("mindstream.runs.requested.v1", "mindstream.knowledge.queries.v1",
                  "mindstream.runs.completed.v1", "mindstream.runs.commands.v1",
                  "mindstream.knowledge.documents.v1"),
        settings="services.memory.settings:MemoryServiceSettings",
        resources=Resources("250m", "512Mi", "1", "1Gi"),
        model_egress=True,
        secret_env=("MINDSTREAM_MEMORY_MODEL_API_KEY", "MINDSTREAM_MEMORY_EMBEDDINGS_API_KEY"),
    ),
    ServiceSpec(
        name="workflows",
        consumes=("mindstream.workflows.requested.v1", "mindstream.workflows.commands.v1",
                  "mindstream.runs.completed.v1", "mindstream.tools.results.v1"),
        settings="services.workflows.settings:WorkflowsSettings",
        resources=Resources("100m", "256Mi", "500m", "512Mi"),
        lag_threshold=50,
    ),
    ServiceSpec(
        name="telemetry",
        consumes=("mindstream.runs.events.v1", "mindstream.tools.results.v1", "mindstream.runs.completed.v1"),
        settings="services.telemetry.settings:TelemetrySettings",
        resources=Resources("100m", "256Mi", "500m", "512Mi"),
        lag_threshold=200,
    ),
)

# The one-shot job: create topics, publish agent definitions.
PROVISION = Resources("100m", "256Mi", "500m", "512Mi")

# Settings read without a service prefix (shared.settings and tracing).
UNPREFIXED_ENV = ("OTEL_EXPORTER_OTLP_ENDPOINT",)

# Non-secret env every service gets, the same everywhere.
COMMON_ENV: dict[str, str] = {
    "MINDSTREAM_DB": "mindstream",
    "MINDSTREAM_LOG_LEVEL": "INFO",
    "MINDSTREAM_TOPIC_PREFIX": "",
}

# Non-secret env that differs by target. Secrets are never here (a test checks).
TARGET_ENV: dict[str, dict[str, str]] = {
    "compose": {
        "KAFKA_BOOTSTRAP_SERVERS": "kafka:19092",
        "KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
        # Local only, no credentials: compose has no Secrets. Kubernetes takes it from one.
        "MONGODB_URI": "mongodb://mongo:27017/?replicaSet=rs0",
    },
    # The base (and dev): in-cluster Kafka without auth. Values a later target must unset
    # cannot live here: an empty KAFKA_SASL_MECHANISM is invalid, not "none".
    "k8s": {
        "KAFKA_BOOTSTRAP_SERVERS": "mindstream-kafka-bootstrap.kafka.svc:9092",
        "KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
        "MINDSTREAM_MODEL_BASE_URL": "https://api.openai.com/v1",
    },
    # Merged over "k8s" by components/prod: Strimzi's SCRAM-over-TLS listener, tracing on.
    "k8s-prod": {
        "KAFKA_BOOTSTRAP_SERVERS": "mindstream-kafka-bootstrap.kafka.svc:9093",
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SSL_CAFILE": "/etc/mindstream/kafka-ca/ca.crt",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector.monitoring.svc:4317",
    },
}

# Where each secret env var comes from in Kubernetes (never a literal value).
K8S_SECRET_ENV: dict[str, SecretRef] = {
    "MONGODB_URI": SecretRef("mindstream-mongodb", "uri"),
    "KAFKA_SASL_USERNAME": SecretRef("mindstream-kafka", "sasl-username", optional=True),
    "KAFKA_SASL_PASSWORD": SecretRef("mindstream-kafka", "sasl-password", optional=True),
    "OPENAI_API_KEY": SecretRef("mindstream-model", "api-key", optional=True),
    "MINDSTREAM_MEMORY_MODEL_API_KEY": SecretRef("mindstream-model", "api-key", optional=True),
    "MINDSTREAM_MEMORY_EMBEDDINGS_API_KEY": SecretRef(
        "mindstream-model", "api-key", optional=True
    ),
    "MINDSTREAM_CONTROL_PLANE_BOOTSTRAP_TOKEN": SecretRef(
        "mindstream-control-plane", "bootstrap-token", optional=True
    ),
}
# Every workload (services and the provisioning job) needs these.
CORE_SECRET_ENV = ("MONGODB_URI", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD")
# The Kafka CA is a file: the Secret is mounted, KAFKA_SSL_CAFILE points at it.
KAFKA_CA = SecretRef("mindstream-kafka", "ca.crt", optional=True)
KAFKA_CA_DIR = "/etc/mindstream/kafka-ca"


def settings_classes() -> list[type[BaseSettings]]:
    """Every settings class the processes read: shared ones plus each service's."""
    from shared.settings import KafkaSettings, MongoSettings, ObservabilitySettings

    return [KafkaSettings, MongoSettings, ObservabilitySettings,
            *(s.settings_class() for s in SERVICES)]


def _env_names(cls: type[BaseSettings]) -> dict[str, Any]:
    prefix = cls.model_config.get("env_prefix", "")
    names: dict[str, Any] = {}
    for name, info in cls.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, str):
            candidates = [alias]
        elif alias is not None and hasattr(alias, "choices"):
            candidates = [c for c in alias.choices if isinstance(c, str) and c.isupper()]
        else:
            candidates = [f"{prefix}{name}".upper()]
        for candidate in candidates:
            names[candidate.upper()] = info
    return names


def known_env_names() -> set[str]:
    """Env var names some settings class reads (case-insensitive, so upper-cased)."""
    names: set[str] = set(UNPREFIXED_ENV)
    for cls in settings_classes():
        names |= set(_env_names(cls))
    return names


def secret_env_names() -> set[str]:
    """Env names whose settings field is a SecretStr: they must come from Secrets."""
    secret: set[str] = set()
    for cls in settings_classes():
        for env, info in _env_names(cls).items():
            if "SecretStr" in repr(info.annotation) or info.annotation is SecretStr:
                secret.add(env)
    return secret
