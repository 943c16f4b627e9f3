"""Message contracts: every Kafka message as a pydantic model, and the topic registry.

This package is the project's public API for anyone who publishes to or
consumes from mindstream's topics. Nothing here does I/O except
:mod:`schemas.export` and :mod:`schemas.compat`, which write the published
contract files when asked.

Modules: :mod:`~schemas.base` (Message, bounded types), :mod:`~schemas.common`,
:mod:`~schemas.runs`, :mod:`~schemas.tools`, :mod:`~schemas.knowledge`,
:mod:`~schemas.agents`, :mod:`~schemas.audit` (the messages),
:mod:`~schemas.envelope` (headers), :mod:`~schemas.codec` (bytes),
:mod:`~schemas.upcast`, :mod:`~schemas.topics` (registry),
:mod:`~schemas.export` and :mod:`~schemas.compat` (published contracts).
"""

from schemas.base import Message
from schemas.codec import decode, encode
from schemas.envelope import Envelope, deterministic_id
from schemas.errors import ContractError, EnvelopeError
from schemas.topics import TOPICS, TopicSpec, topic

__all__ = [
    "TOPICS",
    "ContractError",
    "Envelope",
    "EnvelopeError",
    "Message",
    "TopicSpec",
    "decode",
    "deterministic_id",
    "encode",
    "topic",
]
