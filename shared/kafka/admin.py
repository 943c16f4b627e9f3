"""``mindstream topics apply``: create or update every registered topic, idempotently.

Each topic gets its dead-letter twin. Existing topics have their configs
brought in line and partitions raised if the registry asks for more; a
partition count is never lowered (Kafka cannot), which is reported.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError

from schemas.topics import DLQ_RETENTION_MS, TopicSpec
from shared.settings import KafkaSettings

__all__ = ["TopicAction", "apply_topics", "planned_topics"]

DLQ_PARTITIONS = 3


@dataclass(frozen=True)
class PlannedTopic:
    name: str
    partitions: int
    configs: dict[str, str]


@dataclass(frozen=True)
class TopicAction:
    topic: str
    action: str  # created, updated, unchanged
    detail: str = ""


def planned_topics(specs: Iterable[TopicSpec], prefix: str = "",
                   max_partitions: int | None = None,
                   min_insync_replicas: int | None = None) -> list[PlannedTopic]:
    """The physical topics for ``specs``: each topic and its ``.dlq``.

    ``max_partitions`` caps partition counts (tests use 1-3 to start fast).
    ``min_insync_replicas`` is managed only when given (production: 2 with
    replication factor 3, so ``acks=all`` survives one broker down).
    """
    planned = []
    for spec in specs:
        parts = spec.partitions if max_partitions is None else min(spec.partitions, max_partitions)
        configs = {"cleanup.policy": spec.cleanup_policy, "retention.ms": str(spec.retention_ms)}
        if min_insync_replicas is not None:
            configs["min.insync.replicas"] = str(min_insync_replicas)
        planned.append(PlannedTopic(spec.physical(prefix), parts, configs))
        dlq_parts = DLQ_PARTITIONS if max_partitions is None else min(DLQ_PARTITIONS, max_partitions)
        planned.append(PlannedTopic(spec.physical(prefix) + ".dlq", dlq_parts, {
            "cleanup.policy": "delete", "retention.ms": str(DLQ_RETENTION_MS),
        }))
    return planned


async def apply_topics(settings: KafkaSettings, specs: Iterable[TopicSpec], *, prefix: str = "",
                       max_partitions: int | None = None,
                       replication_factor: int = 1,
                       min_insync_replicas: int | None = None) -> list[TopicAction]:
    from shared.kafka.broker import _security

    security = _security(settings)
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers,
        security_protocol=settings.security_protocol,
        ssl_context=getattr(security, "ssl_context", None),
        sasl_mechanism=settings.sasl_mechanism or "PLAIN",
        sasl_plain_username=settings.sasl_username,
        sasl_plain_password=(settings.sasl_password.get_secret_value()
                             if settings.sasl_password else None),
    )
    await admin.start()
    try:
        planned = planned_topics(specs, prefix, max_partitions, min_insync_replicas)
        return await _apply(admin, planned, replication_factor)
    finally:
        await admin.close()


async def _apply(admin: AIOKafkaAdminClient, planned: list[PlannedTopic],
                 replication_factor: int) -> list[TopicAction]:
    existing = set(await admin.list_topics())
    actions: list[TopicAction] = []
    missing = [p for p in planned if p.name not in existing]
    if missing:
        try:
            await admin.create_topics([
                NewTopic(p.name, p.partitions, replication_factor, topic_configs=p.configs)
                for p in missing
            ])
        except TopicAlreadyExistsError:
            pass  # created concurrently by another `apply`: same outcome
        actions += [TopicAction(p.name, "created", f"{p.partitions} partitions") for p in missing]
    present = [p for p in planned if p.name in existing]
    if not present:
        return actions
    described = await admin.describe_topics([p.name for p in present])
    partitions = {d["topic"]: len(d["partitions"]) for d in described}
    configs = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, p.name) for p in present])
    current: dict[str, dict[str, str]] = {}
    for response in configs:
        for resource in response.resources:
            name, entries = resource[3], resource[4]
            current[name] = {entry[0]: entry[1] for entry in entries}
    for p in present:
        have_configs = current.get(p.name, {})
        changes = {k: v for k, v in p.configs.items() if have_configs.get(k) != v}
        notes = []
        if changes:
            # AlterConfigs replaces the topic's whole config set: keep what others set
            # (the broker reports defaults too; resending them is harmless).
            merged = {k: v for k, v in have_configs.items() if v is not None} | p.configs
            await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, p.name, merged)])
            notes.append("configs " + ", ".join(f"{k}={v}" for k, v in changes.items()))
        have = partitions.get(p.name, p.partitions)
        if have < p.partitions:
            await admin.create_partitions({p.name: NewPartitions(p.partitions)})
            notes.append(f"partitions {have}->{p.partitions}")
        elif have > p.partitions:
            notes.append(f"has {have} partitions, registry says {p.partitions} (not lowered)")
        actions.append(TopicAction(p.name, "updated" if changes or have < p.partitions else "unchanged",
                                   "; ".join(notes)))
    return actions
