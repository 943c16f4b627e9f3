"""The one publishing helper: envelope headers, key, JSON body, physical topic name."""

from __future__ import annotations

from collections.abc import Iterable

from faststream.kafka import KafkaBroker

from schemas.base import Message
from schemas.codec import encode
from schemas.envelope import Envelope
from schemas.topics import TopicSpec

__all__ = ["PublishObserver", "Publisher"]


class PublishObserver:
    """Hook for metrics; the default does nothing."""

    def published(self, topic: str) -> None:
        return None


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
        if not isinstance(message, spec.message):
            raise TypeError(f"{spec.name} carries {spec.message.__name__}, "
                            f"not {type(message).__name__}")
        envelope = Envelope.new(message, source=self._source, message_id=message_id,
                                caused_by=caused_by, correlation_id=correlation_id)
        topic = physical_topic or spec.physical(self._prefix)
        await self.send_raw(topic, encode(message), key=spec.key_of(message),
                            headers=envelope.to_headers())
        return envelope

    async def send_raw(self, topic: str, body: bytes, *, key: bytes | None,
                       headers: Iterable[tuple[str, bytes]]) -> None:
        """Send bytes as they are (dead letters keep the original body and headers)."""
        header_map = {name: value.decode("utf-8", "replace") for name, value in headers}
        await self._broker.publish(
            body, topic=topic, key=key, headers=header_map,
            correlation_id=header_map.get("correlation_id") or header_map.get("ce_id"),
        )
        self._observer.published(topic)
