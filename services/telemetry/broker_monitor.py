"""Consumer lag and dead letters, measured from the broker rather than from the consumers.

A stuck or crashed consumer reports nothing about itself, so lag is read
where it is true: the group's committed offset (admin
``OffsetFetch``) against each partition's end offset. For every watched
group and every topic it has committed to, :data:`~services.telemetry.metrics.CONSUMER_LAG`
is the sum over the topic's partitions (a partition with no commit yet
counts from the log start) and ``CONSUMER_LAG_MAX`` the worst partition.

Dead letters are the end offsets of each registry topic's ``.dlq`` twin,
summed over partitions: the number of messages ever dead-lettered there.
It only grows (retention deletes old ones but never lowers an end offset),
so alerts use ``delta(...) > 0``.

Topics are labelled by their registry name without the deployment's topic
prefix; topics outside the registry (and their prefix) are ignored, so the
label stays bounded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from schemas.topics import TOPICS
from services.telemetry import metrics as m
from shared.kafka.broker import _security
from shared.observability.metrics import ServiceMetrics
from shared.settings import KafkaSettings

__all__ = ["BrokerMonitor", "GroupLag", "lag_by_topic"]

_log = logging.getLogger(__name__)

REGISTRY_NAMES = frozenset(spec.name for spec in TOPICS)


@dataclass(frozen=True)
class GroupLag:
    group: str
    topic: str
    total: int
    worst: int


def lag_by_topic(
    group: str,
    committed: dict[TopicPartition, int],
    ends: dict[TopicPartition, int],
    starts: dict[TopicPartition, int],
    label: dict[str, str],
) -> list[GroupLag]:
    """Per-topic lag of ``group``; ``label`` maps physical topic → metric label.

    A partition without a commit counts from its log start; a commit past
    the end (the topic was recreated) counts as zero, never negative.
    """
    totals: dict[str, list[int]] = {}
    for tp, end in ends.items():
        topic = label.get(tp.topic)
        if topic is None:
            continue
        offset = committed.get(tp)
        if offset is None or offset < 0:
            offset = starts.get(tp, 0)
        totals.setdefault(topic, []).append(max(0, end - offset))
    return [GroupLag(group, topic, sum(lags), max(lags)) for topic, lags in sorted(totals.items())]


class BrokerMonitor:
    """Polls the broker every ``interval_s`` and sets the lag and dead-letter gauges."""

    def __init__(
        self,
        kafka: KafkaSettings,
        metrics: ServiceMetrics,
        groups: Sequence[str],
        *,
        interval_s: float = 15.0,
        client_id: str = "mindstream-telemetry-monitor",
    ) -> None:
        self._kafka = kafka
        self._groups = list(dict.fromkeys(groups))
        self._interval = interval_s
        self._client_id = client_id
        self._prefix = kafka.topic_prefix
        self._lag = metrics.gauge(m.CONSUMER_LAG)
        self._lag_max = metrics.gauge(m.CONSUMER_LAG_MAX)
        self._dead = metrics.gauge(m.DEAD_LETTER_MESSAGES)
        self._polls = metrics.counter(m.LAG_POLLS)
        self._reported: set[tuple[str, str]] = set()
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._waiters: list[asyncio.Future[None]] = []

    # -- lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        security = _security(self._kafka)
        common: dict[str, Any] = {
            "bootstrap_servers": self._kafka.bootstrap_servers,
            "security_protocol": self._kafka.security_protocol,
            "ssl_context": getattr(security, "ssl_context", None),
            "sasl_mechanism": self._kafka.sasl_mechanism or "PLAIN",
            "sasl_plain_username": self._kafka.sasl_username,
            "sasl_plain_password": (self._kafka.sasl_password.get_secret_value()
                                    if self._kafka.sasl_password else None),
            "client_id": self._client_id,
            "request_timeout_ms": self._kafka.request_timeout_ms,
        }
        self._admin = AIOKafkaAdminClient(**common)
        self._consumer = AIOKafkaConsumer(group_id=None, enable_auto_commit=False, **common)
        await self._admin.start()
        await self._consumer.start()

    async def stop(self) -> None:
        admin, consumer = self._admin, self._consumer
        self._admin = self._consumer = None
        if consumer is not None:
            await consumer.stop()
        if admin is not None:
            await admin.close()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.cancel()

    async def run(self) -> None:
        """The background loop: poll, sleep, repeat; a failed poll is counted and logged."""
        while True:
            try:
                await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                self._polls.inc(result="error")
                _log.warning("broker poll for lag and dead letters failed", exc_info=True)
            await asyncio.sleep(self._interval)

    async def next_poll(self) -> None:
        """Wait until the next poll has finished (tests await this instead of sleeping)."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter

    # -- one poll -----------------------------------------------------------

    def _label(self, physical: str) -> str | None:
        if not physical.startswith(self._prefix):
            return None
        name = physical[len(self._prefix):]
        return name if name in REGISTRY_NAMES else None

    async def poll_once(self) -> list[GroupLag]:
        if self._admin is None or self._consumer is None:
            raise RuntimeError("BrokerMonitor is not started")
        partitions = await self._all_partitions()
        lags: list[GroupLag] = []
        for group in await self._watched_groups():
            lags += await self._group_lag(group, partitions)
        seen: set[tuple[str, str]] = set()
        for lag in lags:
            self._lag.set(lag.total, group=lag.group, topic=lag.topic)
            self._lag_max.set(lag.worst, group=lag.group, topic=lag.topic)
            seen.add((lag.group, lag.topic))
        for group, topic in self._reported - seen:
            self._lag.set(0, group=group, topic=topic)
            self._lag_max.set(0, group=group, topic=topic)
        self._reported |= seen
        await self._dead_letters(partitions)
        self._polls.inc(result="ok")
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        return lags

    async def _watched_groups(self) -> list[str]:
        """Consumer groups named in settings, or starting with one ending in ``-``/``.``.

        Services keep one group per topic (``mindstream-memory.runs-requested``), so
        the default watches every group under the ``mindstream-`` prefix.
        """
        assert self._admin is not None
        prefixes = [g for g in self._groups if g.endswith(("-", "."))]
        exact = [g for g in self._groups if g not in prefixes]
        if not prefixes:
            return exact
        listed = await self._admin.list_consumer_groups()
        found = sorted({g[0] for g in listed if any(g[0].startswith(p) for p in prefixes)})
        return list(dict.fromkeys(exact + found))

    async def _all_partitions(self) -> dict[str, list[TopicPartition]]:
        """Partitions of every existing topic.

        Asks for all topics' metadata rather than named ones: a metadata
        request naming a missing topic makes a broker with auto-creation on
        create it, and a monitor must not create topics.
        """
        assert self._admin is not None
        described = await self._admin.describe_topics(None)
        return {
            t["topic"]: [TopicPartition(t["topic"], p["partition"]) for p in t["partitions"]]
            for t in described if not t.get("error_code")
        }

    async def _group_lag(self, group: str, partitions: dict[str, list[TopicPartition]],
                         ) -> list[GroupLag]:
        assert self._admin is not None
        offsets = await self._admin.list_consumer_group_offsets(group)
        committed = {tp: meta.offset for tp, meta in offsets.items()}
        label = {tp.topic: name for tp in committed if (name := self._label(tp.topic))}
        wanted = [tp for topic in label for tp in partitions.get(topic, [])]
        if not wanted:
            return []
        ends, starts = await self._offsets(wanted)
        return lag_by_topic(group, committed, ends, starts, label)

    async def _offsets(self, partitions: list[TopicPartition],
                       ) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
        assert self._consumer is not None
        ends = await self._consumer.end_offsets(partitions)
        starts = await self._consumer.beginning_offsets(partitions)
        return dict(ends), dict(starts)

    async def _dead_letters(self, partitions: dict[str, list[TopicPartition]]) -> None:
        dlqs = {spec.physical(self._prefix) + ".dlq": spec.name for spec in TOPICS}
        wanted = [tp for topic in dlqs for tp in partitions.get(topic, [])]
        if not wanted:
            return
        ends = await self._consumer.end_offsets(wanted) if self._consumer else {}
        totals: dict[str, int] = {}
        for tp, end in ends.items():
            name = dlqs[tp.topic]
            totals[name] = totals.get(name, 0) + end
        for name, total in totals.items():
            self._dead.set(total, topic=name)
