"""The one publishing helper: envelope headers, key, JSON body, physical topic name."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from faststream.kafka import KafkaBroker

from schemas.base import Message
from schemas.codec import encode
from schemas.envelope import Envelope
from schemas.topics import TopicSpec

__all__ = ["Outgoing", "PublishObserver", "Publisher"]


class PublishObserver:
    """Hook for metrics; the default does nothing."""

    def published(self, topic: str) -> None:
        return None


@dataclass(frozen=True)
class Outgoing:
    """One message of a :meth:`Publisher.publish_many` batch (the arguments of ``publish``)."""

    spec: TopicSpec
    message: Message
    caused_by: Envelope | None = None
    message_id: str | None = None
    correlation_id: str | None = None
    physical_topic: str | None = None


class Publisher:
    """Publishes contract messages with their envelope.

    ``source`` becomes ``ce_source`` (``mindstream/<service>``). Pass
    ``caused_by`` (the envelope of the message being handled) so the new one
    inherits the correlation id and trace, and ``message_id`` (from
    :func:`schemas.envelope.deterministic_id`) for any step that can be
    replayed, so a replay produces the same id and consumers drop it.
    """

    def __init__(self, broker: KafkaBroker, *, source: str, topic_prefix: str = "",
                 observer: PublishObserver | None = None) -> None:
        self._broker = broker
        self._source = source
        self._prefix = topic_prefix
        self._observer = observer or PublishObserver()

    @property
    def topic_prefix(self) -> str:
        return self._prefix

    async def publish(
        self,
        spec: TopicSpec,
        message: Message,
        *,
        caused_by: Envelope | None = None,
        message_id: str | None = None,
        correlation_id: str | None = None,
        physical_topic: str | None = None,
    ) -> Envelope:
        """Publish and wait for the broker's ack (acks=all). Returns the envelope sent.

        ``physical_topic`` overrides the registry's name: for client reply
        topics, which carry the same contract under a name the client chose.
        """
        out = Outgoing(spec, message, caused_by, message_id, correlation_id, physical_topic)
        envelope, topic, body, key, headers = self._prepare(out)
        await self.send_raw(topic, body, key=key, headers=headers)
        return envelope

    async def publish_many(self, batch: Sequence[Outgoing]) -> list[BaseException | None]:
        """Send every message in order without waiting, then wait for all the acks.

        The producer keeps the order of its messages per partition (idempotence
        on), so this is ``publish`` one by one with one broker round trip (and
        one linger) for the batch instead of one each. Every message is still
        acknowledged by all in-sync replicas before this returns. Returns, per
        message, ``None`` or the error its send ended with; nothing is raised
        for a failed send, so the caller decides which failures matter.
        """
        pending: list[asyncio.Future[Any] | BaseException] = []
        topics: list[str] = []
        for out in batch:
            try:
                _envelope, topic, body, key, headers = self._prepare(out)
                pending.append(await self._send(topic, body, key=key, headers=headers, confirm=False))
            except Exception as exc:  # reported per message, as documented
                pending.append(exc)
                topic = ""
            topics.append(topic)
        results: list[BaseException | None] = []
        for topic, item in zip(topics, pending, strict=True):
            if isinstance(item, BaseException):
                results.append(item)
                continue
            try:
                await item
            except Exception as exc:
                results.append(exc)
                continue
            self._observer.published(topic)
            results.append(None)
        return results

    def _prepare(self, out: Outgoing) -> tuple[Envelope, str, bytes, bytes, list[tuple[str, bytes]]]:
        if not isinstance(out.message, out.spec.message):
            raise TypeError(f"{out.spec.name} carries {out.spec.message.__name__}, "
                            f"not {type(out.message).__name__}")
        envelope = Envelope.new(out.message, source=self._source, message_id=out.message_id,
                                caused_by=out.caused_by, correlation_id=out.correlation_id)
        topic = out.physical_topic or out.spec.physical(self._prefix)
        return (envelope, topic, encode(out.message), out.spec.key_of(out.message),
                envelope.to_headers())

    async def send_raw(self, topic: str, body: bytes, *, key: bytes | None,
                       headers: Iterable[tuple[str, bytes]]) -> None:
        """Send bytes as they are (dead letters keep the original body and headers)."""
        await self._send(topic, body, key=key, headers=headers, confirm=True)
        self._observer.published(topic)

    async def _send(self, topic: str, body: bytes, *, key: bytes | None,
                    headers: Iterable[tuple[str, bytes]], confirm: bool) -> Any:
        """Hand the record to the producer; with ``confirm``, wait for the ack, else
        return the future that resolves with it."""
        header_map = {name: value.decode("utf-8", "replace") for name, value in headers}
        options: dict[str, Any] = {} if confirm else {"no_confirm": True}
        return await self._broker.publish(
            body, topic=topic, key=key, headers=header_map,
            correlation_id=header_map.get("correlation_id") or header_map.get("ce_id"), **options,
        )
