"""The service runtime: one way to wire a service to Kafka, MongoDB and its probes.

Every service's ``app.py`` builds a :class:`ServiceRuntime`, registers its
consumers and start-up hooks on it, and its ``__main__`` calls
:func:`run_until_signalled`. Start order is: indexes and hooks, then the
broker (consumers begin), then the probes' HTTP port, then background tasks
(sweepers). Stop order is the reverse; the broker stops fetching, lets
in-flight handlers finish within its graceful timeout, commits, and leaves
its consumer groups.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from schemas.base import Message
from schemas.topics import TopicSpec
from shared.kafka.broker import make_broker
from shared.kafka.consumer import DEFAULT_RETRY, ConsumerPipeline, Handler, PipelineObserver, subscribe
from shared.kafka.publisher import Publisher, PublishObserver
from shared.mongo import Doc, IndexSpec, ProcessedLedger, ensure_indexes, make_client, sweep_expired
from shared.observability.http import HealthServer
from shared.observability.metrics import DeadLetterReason, FailureKind, ServiceMetrics
from shared.resilience import RetryPolicy
from shared.settings import KafkaSettings, MongoSettings
from shared.tasks import cancel_and_wait, where

__all__ = ["MetricsObserver", "ServiceRuntime", "consumer_group", "run_until_signalled"]

log = logging.getLogger("mindstream.service")


def consumer_group(service: str, spec: TopicSpec, topic_prefix: str = "") -> str:
    """A service's consumer group on a topic: ``mindstream-<service>.<domain>-<event>``.

    Autoscalers (KEDA) and the lag monitor name the same groups, so this is
    the one place the naming lives. A topic prefix (tests, benchmarks, several
    systems on one cluster) prefixes the group too: a group is cluster-wide, and
    members of one system joining or leaving must not rebalance another's.
    """
    parts = spec.name.split(".")[1:-1]  # drop "mindstream" and the version
    return f"{topic_prefix}mindstream-{service}.{'-'.join(parts)}"


class MetricsObserver(PipelineObserver, PublishObserver):
    """Feeds the consumer pipeline's and publisher's events into the service's metrics."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        self._m = metrics

    def consumed(self, topic: str) -> None:
        self._m.consumed(topic)

    def handled(self, topic: str, seconds: float) -> None:
        self._m.observe_handler(topic, seconds)

    def retried(self, topic: str) -> None:
        self._m.retried(topic)

    def failed(self, topic: str, kind: FailureKind) -> None:
        self._m.handler_failed(topic, kind)

    def dead_lettered(self, topic: str, reason_kind: DeadLetterReason) -> None:
        self._m.dead_lettered(topic, reason_kind)

    def published(self, topic: str) -> None:
        self._m.produced(topic)


class ServiceRuntime:
    def __init__(
        self,
        name: str,
        *,
        kafka: KafkaSettings,
        mongo: MongoSettings,
        http_host: str = "127.0.0.1",
        http_port: int = 0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.name = name
        self.kafka = kafka
        self.metrics = ServiceMetrics(name.replace("-", "_"))
        self.observer = MetricsObserver(self.metrics)
        self.broker = make_broker(kafka, client_id=f"mindstream-{name}")
        self.publisher = Publisher(self.broker, source=f"mindstream/{name}",
                                   topic_prefix=kafka.topic_prefix, observer=self.observer)
        self.mongo_client = make_client(mongo, app_name=f"mindstream-{name}")
        self.db: AsyncDatabase[Doc] = self.mongo_client[mongo.database]
        self.ledger = ProcessedLedger(self.db, f"mindstream-{name}")
        self.retry = retry or DEFAULT_RETRY
        self.health = HealthServer(http_host, http_port, self.metrics.registry,
                                   checks={"kafka": self._kafka_ready, "mongodb": self._mongo_ready})
        self._indexes: dict[str, list[IndexSpec]] = {
            ProcessedLedger.COLLECTION: list(ProcessedLedger.INDEXES)}
        self.subscriptions: list[tuple[str, str | None]] = []  # (topic, group) as registered
        self._on_start: list[Callable[[], Awaitable[None]]] = []
        self._on_stop: list[Callable[[], Awaitable[None]]] = []
        self._background: list[Callable[[], Awaitable[None]]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self.stop_background_timeout_s = 10.0

    # -- registration -------------------------------------------------------

    def indexes(self, declared: dict[str, list[IndexSpec]] | dict[str, tuple[IndexSpec, ...]]) -> None:
        for collection, specs in declared.items():
            self._indexes.setdefault(collection, []).extend(specs)

    def consume(
        self,
        spec: TopicSpec,
        handler: Handler[Any],
        *,
        dedupe: bool = True,
        group: str | None = "",
        physical_topic: str | None = None,
        from_beginning: bool = True,
        concurrency: int = 1,
        accepts: Callable[[Any], bool] | None = None,
    ) -> ConsumerPipeline[Message]:
        """Consume ``spec`` through the shared pipeline.

        Each topic gets its own consumer group, ``mindstream-<service>.<domain>-<event>``
        (:meth:`group_for`): replicas share it, and a member joining or leaving one
        subscription rebalances that topic only, not every topic the service reads
        (faster starts, no cross-topic stalls). ``group=None`` reads without a
        consumer group (every replica reads everything: registries built from
        compacted topics); such consumers
        do not use the processed-message ledger. ``accepts`` (see
        :class:`ConsumerPipeline`): the messages the handler acts on at all.
        """
        pipeline: ConsumerPipeline[Message] = ConsumerPipeline(
            spec=spec, group=self.group_for(spec) if group == "" or group is None else group,
            handler=handler, publisher=self.publisher,
            ledger=self.ledger if dedupe and group is not None else None,
            retry=self.retry, observer=self.observer, accepts=accepts,
        )
        self.subscriptions.append((spec.name, pipeline.group if group is not None else None))
        subscribe(self.broker, pipeline, topic_prefix=self.kafka.topic_prefix,
                  physical_topic=physical_topic, from_beginning=from_beginning,
                  group_id=pipeline.group if group is not None else None,
                  concurrency=concurrency)
        return pipeline

    def group_for(self, spec: TopicSpec) -> str:
        """The consumer group of this service on ``spec``'s topic."""
        return consumer_group(self.name, spec, self.kafka.topic_prefix)

    def on_start(self, hook: Callable[[], Awaitable[None]]) -> None:
        self._on_start.append(hook)

    def on_stop(self, hook: Callable[[], Awaitable[None]]) -> None:
        self._on_stop.append(hook)

    def background(self, loop: Callable[[], Awaitable[None]]) -> None:
        """A long-running task (a sweeper) started after the broker, cancelled at stop."""
        self._background.append(loop)

    # -- lifecycle ----------------------------------------------------------

    async def start(self) -> None:
        unsupported_ttl = await ensure_indexes(self.db, self._indexes)
        if unsupported_ttl:
            self._background.append(lambda: self._sweep_ttl(unsupported_ttl))
        for hook in self._on_start:
            await hook()
        await self.broker.start()
        await self.health.start()
        for loop in self._background:
            self._tasks.append(asyncio.create_task(self._guard(loop), name=f"{self.name}-bg"))
        self._started = True
        log.info("%s started; probes and metrics on port %d", self.name, self.health.port)

    async def _guard(self, loop: Callable[[], Awaitable[None]]) -> None:
        """Keep a background loop alive across unexpected errors (logged, then restarted)."""
        while True:
            try:
                await loop()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s background task failed; restarting in 1s", self.name)
                await asyncio.sleep(1.0)

    async def stop(self) -> None:
        await self._stop_background()
        await self.broker.stop()
        for hook in reversed(self._on_stop):
            await hook()
        if self._started:
            await self.health.stop()
        await self.mongo_client.close()
        self._started = False

    async def _stop_background(self) -> None:
        """Cancel the background loops and wait for them (see :mod:`shared.tasks`:
        a loop can swallow one cancel); a loop that will not end is left, and
        logged with where it is stuck, after ``stop_background_timeout_s``."""
        tasks, self._tasks = self._tasks, []
        for task in await cancel_and_wait(tasks, timeout_s=self.stop_background_timeout_s):
            log.error("%s: background task did not stop within %.0fs (at %s); leaving it",
                      self.name, self.stop_background_timeout_s, where(task))

    async def __aenter__(self) -> ServiceRuntime:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _sweep_ttl(self, specs: list[tuple[str, IndexSpec]], every_s: float = 600.0) -> None:
        """Retention where the server has no TTL indexes (FerretDB)."""
        while True:
            for collection, spec in specs:
                await sweep_expired(self.db, collection, spec)
            await asyncio.sleep(every_s)

    async def _kafka_ready(self) -> bool:
        return bool(await self.broker.ping(timeout=2.0))

    async def _mongo_ready(self) -> bool:
        await self.db.command("ping")
        return True


async def run_until_signalled(runtime: ServiceRuntime) -> None:
    """Run until SIGTERM or SIGINT, then stop gracefully (Kubernetes sends SIGTERM)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await runtime.start()
    try:
        await stop.wait()
        log.info("%s stopping on signal", runtime.name)
    finally:
        await runtime.stop()
