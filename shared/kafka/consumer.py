"""The consumer pipeline: validate, deduplicate, handle, retry, dead-letter, commit.

Architecture rules 1, 3 and 5 in one place, so no service writes its own:

* the envelope and body are validated first; an invalid message goes to
  ``<topic>.dlq`` at once with the reason, source topic, partition and offset
  in headers, and consumption goes on with the next message;
* a message the consumer does not take (its ``accepts`` predicate, e.g. a
  completion of a run that is not a child run) is committed at once: no
  handler, and no ledger round trips for a message that has no effect;
* a message whose id is in the processed-message ledger is skipped (it was
  handled before a crash lost the commit);
* the handler runs; a :class:`~shared.errors.PermanentError` dead-letters the
  message, any other error is retried with exponential backoff and jitter, a
  bounded number of times, then dead-lettered;
* only then is the message marked in the ledger and its offset committed.

If even dead-lettering or the ledger fails (Kafka or MongoDB unreachable),
the message is *not* committed: the subscriber rewinds to it and tries again
after a pause, so nothing is skipped silently.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import IllegalStateError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from schemas.base import Message
from schemas.codec import decode
from schemas.envelope import (
    HEADER_DLQ_OFFSET,
    HEADER_DLQ_PARTITION,
    HEADER_DLQ_REASON,
    HEADER_DLQ_TOPIC,
    Envelope,
)
from schemas.errors import ContractError
from schemas.topics import TopicSpec
from shared.errors import PermanentError
from shared.kafka.publisher import Publisher
from shared.mongo import ProcessedLedger
from shared.observability.metrics import DeadLetterReason, FailureKind
from shared.observability.tracing import start_span
from shared.resilience import RetryPolicy, retry_async

__all__ = [
    "HEADER_DLQ_ERROR_KIND",
    "HEADER_DLQ_GROUP",
    "ConsumerPipeline",
    "Delivery",
    "Outcome",
    "PipelineObserver",
    "release_drained_partition",
    "subscribe",
]

log = logging.getLogger("mindstream.consumer")

M = TypeVar("M", bound=Message)

HEADER_DLQ_ERROR_KIND = "dlq_error_kind"
DEFAULT_RETRY = RetryPolicy(max_attempts=5, base_delay=0.05, max_delay=2.0)
HEADER_DLQ_GROUP = "dlq_consumer_group"


@dataclass(frozen=True)
class Delivery(Generic[M]):
    """One validated message, as a handler receives it."""

    message: M
    envelope: Envelope
    topic: str
    partition: int
    offset: int


Handler = Callable[[Delivery[M]], Awaitable[None]]


class Outcome(StrEnum):
    HANDLED = "handled"
    DUPLICATE = "duplicate"
    DEAD_LETTERED = "dead_lettered"
    NOT_ACCEPTED = "not_accepted"


class PipelineObserver:
    """Hooks for metrics and tests; the default does nothing."""

    def consumed(self, topic: str) -> None: ...
    def handled(self, topic: str, seconds: float) -> None: ...
    def duplicate(self, topic: str) -> None: ...
    def retried(self, topic: str) -> None: ...
    def failed(self, topic: str, kind: FailureKind) -> None: ...
    def dead_lettered(self, topic: str, reason_kind: DeadLetterReason) -> None: ...


class ConsumerPipeline(Generic[M]):
    def __init__(
        self,
        *,
        spec: TopicSpec,
        group: str,
        handler: Handler[M],
        publisher: Publisher,
        ledger: ProcessedLedger | None,
        retry: RetryPolicy = DEFAULT_RETRY,
        observer: PipelineObserver | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        accepts: Callable[[M], bool] | None = None,
    ) -> None:
        """``accepts``: which valid messages the handler acts on at all. Others are
        committed without the handler or the ledger, so the predicate must hold for
        every message the handler would change anything for (pure, no I/O)."""
        self.spec = spec
        self.group = group
        self._handler = handler
        self._publisher = publisher
        self._ledger = ledger
        self._retry = retry
        self._observer = observer or PipelineObserver()
        self._sleep = sleep
        self._accepts = accepts

    async def process(self, record: ConsumerRecord[Any, Any]) -> Outcome:
        """Process one record. Raises only when the record must not be committed."""
        topic = self.spec.name
        self._observer.consumed(topic)
        try:
            envelope = Envelope.from_headers(record.headers or ())
            message: M = decode(self.spec.message, record.value, envelope)  # type: ignore[assignment]
        except ContractError as exc:
            await self._dead_letter(record, "contract", str(exc))
            return Outcome.DEAD_LETTERED
        if self._accepts is not None and not self._accepts(message):
            return Outcome.NOT_ACCEPTED
        if self._ledger is not None and await self._ledger.seen(envelope.id):
            self._observer.duplicate(topic)
            return Outcome.DUPLICATE
        delivery = Delivery(message, envelope, topic, record.partition, record.offset)
        started = time.perf_counter()
        try:
            with start_span(f"consume {topic}", envelope.traceparent):  # no-op unless tracing on
                await retry_async(
                    lambda: self._handler(delivery), self._retry,
                    retry_on=lambda exc: not isinstance(exc, PermanentError | ContractError),
                    sleep=self._sleep,
                    on_retry=lambda attempt, exc, wait: self._on_retry(envelope, attempt, exc, wait),
                )
        except (PermanentError, ContractError) as exc:
            self._observer.failed(topic, "permanent")
            await self._dead_letter(record, "permanent", _describe(exc))
            return Outcome.DEAD_LETTERED
        except Exception as exc:
            self._observer.failed(topic, "transient")
            await self._dead_letter(record, "retries_exhausted", _describe(exc))
            return Outcome.DEAD_LETTERED
        self._observer.handled(topic, time.perf_counter() - started)
        if self._ledger is not None:
            await self._ledger.mark(envelope.id, topic, record.partition, record.offset)
        return Outcome.HANDLED

    def _on_retry(self, envelope: Envelope, attempt: int, exc: BaseException, wait: float) -> None:
        self._observer.retried(self.spec.name)
        log.warning("retrying %s %s after attempt %d in %.2fs: %s", self.spec.name, envelope.id,
                    attempt, wait, _describe(exc))

    async def _dead_letter(self, record: ConsumerRecord[Any, Any], kind: DeadLetterReason,
                           reason: str) -> None:
        headers = [(k, v) for k, v in (record.headers or ()) if not k.startswith("dlq_")]
        headers += [
            (HEADER_DLQ_REASON, reason[:1000].encode()),
            (HEADER_DLQ_ERROR_KIND, kind.encode()),
            (HEADER_DLQ_TOPIC, record.topic.encode()),
            (HEADER_DLQ_PARTITION, str(record.partition).encode()),
            (HEADER_DLQ_OFFSET, str(record.offset).encode()),
            (HEADER_DLQ_GROUP, self.group.encode()),
        ]
        await self._publisher.send_raw(f"{record.topic}.dlq", record.value or b"",
                                       key=record.key, headers=headers)
        self._observer.dead_lettered(self.spec.name, kind)
        log.error("dead-lettered %s[%d]@%d (%s): %s", record.topic, record.partition,
                  record.offset, kind, reason)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if not isinstance(exc, PermanentError | ContractError):
        frame = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
        where = f" at {frame[0].filename.rsplit('/', 1)[-1]}:{frame[0].lineno}" if frame else ""
        text = f"{type(exc).__name__}: {text}{where}"
    return text


@runtime_checkable
class _Seekable(Protocol):
    """What :func:`release_drained_partition` needs of an ``AIOKafkaConsumer``."""

    def highwater(self, partition: TopicPartition) -> int | None: ...
    def seek(self, partition: TopicPartition, offset: int) -> None: ...


def release_drained_partition(consumer: object, record: ConsumerRecord[Any, Any]) -> bool:
    """Let the fetcher poll ``record``'s partition again while ``record`` is handled.

    aiokafka keeps a partition's fetched batch until the *next* ``getone`` finds it
    empty, i.e. until the handler of its last record has returned. If that takes
    longer than the fetcher's prefetch backoff (100 ms), the fetcher sends a long
    poll for the consumer's *other* partitions meanwhile, and the drained partition
    cannot join it: the next message on it -- typically the next step of the same
    session -- waits until that poll returns, up to ``fetch_max_wait_ms`` (500 ms).
    That was the 200-580 ms tail of one-at-a-time runs.

    When ``record`` is the newest record the consumer knows of on its partition,
    seeking to the position the consumer is at anyway drops the empty batch at
    once, so the next long poll includes the partition. It changes neither the
    position nor what is committed (commit-after-effect is untouched). With more
    records known (a backlog, already prefetched) nothing is done: they are next.
    Returns whether the partition was released.
    """
    if not isinstance(consumer, _Seekable):
        return False
    tp = TopicPartition(record.topic, record.partition)
    try:
        highwater = consumer.highwater(tp)
        if highwater is None or record.offset + 1 < highwater:
            return False
        consumer.seek(tp, record.offset + 1)
    except (IllegalStateError, AssertionError):  # revoked by a rebalance meanwhile
        return False
    return True


async def _keep_raw(msg: KafkaMessage) -> Any:
    """Leave decoding to the pipeline, which dead-letters what FastStream would choke on."""
    return msg.body


def subscribe(
    broker: KafkaBroker,
    pipeline: ConsumerPipeline[M],
    *,
    topic_prefix: str = "",
    physical_topic: str | None = None,
    from_beginning: bool = True,
    rewind_pause_s: float = 1.0,
    group_id: str | None = "",
    concurrency: int = 1,
) -> None:
    """Attach ``pipeline`` to ``broker`` as a manually committed subscriber.

    Offsets are committed only after :meth:`ConsumerPipeline.process` returns.
    If it raises, the consumer seeks back to the record (``nack``) and, after
    a pause, gets it again. ``group_id=None`` consumes without a group (every
    replica reads everything, e.g. the compacted agents topic).

    ``concurrency`` > 1 runs that many group members in this process, each
    with its own partitions: partitions are processed in parallel, each one
    still in order (so per-session order holds), and each member commits only
    what it has finished.
    """
    topic = physical_topic or pipeline.spec.physical(topic_prefix)
    group = pipeline.group if group_id == "" else group_id
    options: dict[str, Any] = {
        "group_id": group,
        "ack_policy": AckPolicy.MANUAL,
        "auto_offset_reset": "earliest" if from_beginning else "latest",
        "max_poll_interval_ms": 10 * 60 * 1000,
        "decoder": _keep_raw,
    }
    if concurrency > 1 and group:
        options["max_workers"] = concurrency
    subscriber = broker.subscriber(topic, **options)

    @subscriber  # type: ignore[untyped-decorator]
    async def consume(msg: KafkaMessage) -> None:
        release_drained_partition(msg.consumer, msg.raw_message)
        try:
            await pipeline.process(msg.raw_message)
        except Exception:
            log.exception("could not process %s; will retry without committing", topic)
            await asyncio.sleep(rewind_pause_s)
            await msg.nack()
            return
        if group:
            await msg.ack()
