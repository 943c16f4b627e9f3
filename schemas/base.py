"""The base of every contract, and the bounded types messages are built from.

Every string, list and dict that crosses a topic has an upper bound: a
producer bug or a hostile client must not be able to push a 50 MB prompt
through the pipeline and exhaust a consumer. Bounds are part of the
published JSON Schema, so tightening one later is a breaking change that
the compatibility test catches.

Models forbid unknown fields. Together with ``schema_version`` this means
consumers are upgraded before producers (Confluent's BACKWARD rule): a new
optional field is read by new consumers, and old consumers never see it
because producers only start writing it after every consumer understands it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, ClassVar

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, JsonValue

__all__ = [
    "ID_PATTERN",
    "AgentId",
    "AgentRef",
    "ContractModel",
    "Id",
    "JsonDict",
    "Label",
    "LongText",
    "Message",
    "Metadata",
    "Name",
    "Sha256Hex",
    "ShortText",
    "Text",
    "ToolName",
    "TopicName",
    "UtcDatetime",
]

ID_PATTERN = r"^[A-Za-z0-9._:@-]{1,128}$"
"""Ids are safe in Kafka keys, MongoDB keys, URLs and log lines without escaping."""


class ContractModel(BaseModel):
    """A part of a message: frozen, strict about unknown fields, whitespace kept as sent."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


class Message(ContractModel):
    """A top-level message published on a topic.

    ``ce_type`` is the CloudEvents type carried in the ``ce_type`` header; a
    consumer refuses a body whose header names another type. ``schema_version``
    is the newest payload version this class reads; older payloads go through
    the upcasters registered in :mod:`schemas.upcast`.
    """

    ce_type: ClassVar[str]
    schema_version: ClassVar[int] = 1


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


Id = Annotated[
    str,
    Field(pattern=ID_PATTERN, min_length=1, max_length=128),
]
AgentId = Annotated[
    str,
    Field(pattern=r"^[A-Za-z0-9._:-]{1,128}$", min_length=1, max_length=128),
]
"""An agent's own id; ``@`` is reserved for the version suffix of :data:`AgentRef`."""
AgentRef = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9._:-]{1,128}(@[1-9][0-9]{0,8})?$",
        min_length=1,
        max_length=138,
        examples=["support", "support@3"],
    ),
]
"""An agent id, optionally pinned to a version: ``support`` or ``support@3``."""
ToolName = Annotated[
    str,
    Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$", min_length=1, max_length=64),
]
"""Same alphabet as OpenAI function names, so a tool name goes to the model unchanged."""
TopicName = Annotated[
    str,
    Field(pattern=r"^[A-Za-z0-9._-]{1,249}$", min_length=1, max_length=249),
]
"""Kafka's own topic-name rule."""
Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", min_length=64, max_length=64)]
Name = Annotated[str, Field(min_length=1, max_length=128)]
Label = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,63}$", min_length=1, max_length=64)]
ShortText = Annotated[str, Field(max_length=1024)]
Text = Annotated[str, Field(max_length=32_000)]
LongText = Annotated[str, Field(max_length=256_000)]
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
"""A timezone-aware instant, normalised to UTC; naive datetimes are refused."""
Metadata = Annotated[
    dict[
        Annotated[str, Field(min_length=1, max_length=64)], Annotated[str, Field(max_length=1024)]
    ],
    Field(max_length=32),
]
"""Small free-form string labels (at most 32 entries)."""
JsonDict = Annotated[dict[Annotated[str, Field(max_length=128)], JsonValue], Field(max_length=64)]
"""A small JSON object; its total size is bounded by the message size limit."""
