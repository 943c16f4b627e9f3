"""The envelope: message attributes carried in Kafka headers.

Header names follow the CloudEvents Kafka protocol binding (binary mode:
attributes in ``ce_*`` headers, the body is the data) plus W3C
``traceparent`` and our correlation, causation and schema-version headers.
Values are UTF-8 bytes; ``ce_time`` is RFC 3339 in UTC.

Ids are random (uuid4) for fresh facts and :func:`deterministic_id` for
steps that can be replayed: a replay then produces the same id and the
consumer's processed-message ledger drops the duplicate.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.base import Message, UtcDatetime
from schemas.errors import EnvelopeError

__all__ = [
    "CONTENT_TYPE",
    "HEADER_CAUSATION",
    "HEADER_CONTENT_TYPE",
    "HEADER_CORRELATION",
    "HEADER_DLQ_OFFSET",
    "HEADER_DLQ_PARTITION",
    "HEADER_DLQ_REASON",
    "HEADER_DLQ_TOPIC",
    "HEADER_ID",
    "HEADER_SCHEMA_VERSION",
    "HEADER_SOURCE",
    "HEADER_SPECVERSION",
    "HEADER_TIME",
    "HEADER_TRACEPARENT",
    "HEADER_TYPE",
    "MINDSTREAM_NAMESPACE",
    "SPEC_VERSION",
    "Envelope",
    "EnvelopeError",
    "deterministic_id",
    "header_json_schema",
]

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"

HEADER_ID = "ce_id"
HEADER_TYPE = "ce_type"
HEADER_SOURCE = "ce_source"
HEADER_TIME = "ce_time"
HEADER_SPECVERSION = "ce_specversion"
HEADER_TRACEPARENT = "traceparent"
HEADER_CORRELATION = "correlation_id"
HEADER_CAUSATION = "causation_id"
HEADER_SCHEMA_VERSION = "schema_version"
HEADER_CONTENT_TYPE = "content-type"

HEADER_DLQ_REASON = "dlq_reason"
"""On a dead letter: why it was dead-lettered (``str`` of the error)."""
HEADER_DLQ_TOPIC = "dlq_topic"
"""On a dead letter: the topic it was consumed from."""
HEADER_DLQ_PARTITION = "dlq_partition"
HEADER_DLQ_OFFSET = "dlq_offset"

MINDSTREAM_NAMESPACE = uuid.UUID("6f1c2a8e-3b5d-5c47-9e0a-6d2b7f4c9a13")
"""Fixed uuid5 namespace of :func:`deterministic_id`; changing it changes every replay id."""

_ENVELOPE_ID = r"^[A-Za-z0-9._:@/-]{1,256}$"
_CE_TYPE = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"
_TRACEPARENT = r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"

_FIELD_HEADERS = {
    "id": HEADER_ID,
    "type": HEADER_TYPE,
    "source": HEADER_SOURCE,
    "time": HEADER_TIME,
    "specversion": HEADER_SPECVERSION,
    "schema_version": HEADER_SCHEMA_VERSION,
    "traceparent": HEADER_TRACEPARENT,
    "correlation_id": HEADER_CORRELATION,
    "causation_id": HEADER_CAUSATION,
}
_REQUIRED = (
    HEADER_ID,
    HEADER_TYPE,
    HEADER_SOURCE,
    HEADER_TIME,
    HEADER_SPECVERSION,
    HEADER_SCHEMA_VERSION,
)


def _escape(part: str) -> str:
    return part.replace("%", "%25").replace("/", "%2F")


def deterministic_id(*parts: str) -> str:
    """A uuid5 over ``"/".join(parts)`` in :data:`MINDSTREAM_NAMESPACE`.

    Use for replayable steps, e.g. ``deterministic_id(run_id, "tool", call_id)``.
    ``/`` and ``%`` inside a part are percent-escaped first, so ``("a/b", "c")``
    and ``("a", "b/c")`` give different ids.
    """
    if not parts:
        raise ValueError("deterministic_id needs at least one part")
    return str(uuid.uuid5(MINDSTREAM_NAMESPACE, "/".join(_escape(p) for p in parts)))


def _format_time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class Envelope(BaseModel):
    """Attributes of one message; frozen, validated, convertible to and from headers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=_ENVELOPE_ID, description="Unique message id (dedupe key).")
    type: str = Field(pattern=_CE_TYPE, max_length=128, description="ce_type of the message.")
    source: str = Field(min_length=1, max_length=256, description="Producing service.")
    time: UtcDatetime = Field(description="When the message was produced, UTC.")
    specversion: str = Field(default=SPEC_VERSION, description="CloudEvents spec version.")
    schema_version: int = Field(ge=1, le=1000, description="Payload version of the body.")
    traceparent: str | None = Field(default=None, pattern=_TRACEPARENT, description="W3C trace.")
    correlation_id: str | None = Field(
        default=None, pattern=_ENVELOPE_ID, description="The run (or flow) it belongs to."
    )
    causation_id: str | None = Field(
        default=None, pattern=_ENVELOPE_ID, description="Id of the message that caused it."
    )

    def to_headers(self) -> list[tuple[str, bytes]]:
        """Kafka headers, in a stable order; absent optional attributes are left out."""
        values: dict[str, str | None] = {
            HEADER_ID: self.id,
            HEADER_TYPE: self.type,
            HEADER_SOURCE: self.source,
            HEADER_TIME: _format_time(self.time),
            HEADER_SPECVERSION: self.specversion,
            HEADER_SCHEMA_VERSION: str(self.schema_version),
            HEADER_TRACEPARENT: self.traceparent,
            HEADER_CORRELATION: self.correlation_id,
            HEADER_CAUSATION: self.causation_id,
            HEADER_CONTENT_TYPE: CONTENT_TYPE,
        }
        return [(k, v.encode()) for k, v in values.items() if v is not None]

    @classmethod
    def from_headers(
        cls, headers: Mapping[str, str | bytes] | Iterable[tuple[str, bytes]]
    ) -> Envelope:
        """Read the envelope from Kafka headers; unknown headers are ignored.

        Header names are matched case-insensitively. An invalid ``traceparent``
        is dropped rather than refused, as W3C trace context asks. Anything
        else wrong raises :class:`EnvelopeError` naming the header.
        """
        found = _collect(headers)
        for name in _REQUIRED:
            if name not in found:
                raise EnvelopeError(f"missing header {name!r}")
        if found.get(HEADER_SPECVERSION) != SPEC_VERSION:
            raise EnvelopeError(
                f"header {HEADER_SPECVERSION!r}: unsupported version "
                f"{found[HEADER_SPECVERSION][:20]!r}, expected {SPEC_VERSION!r}"
            )
        content_type = found.get(HEADER_CONTENT_TYPE)
        if content_type is not None and content_type.split(";")[0].strip().lower() != CONTENT_TYPE:
            raise EnvelopeError(
                f"header {HEADER_CONTENT_TYPE!r}: expected {CONTENT_TYPE!r}, got "
                f"{content_type[:60]!r}"
            )
        data: dict[str, Any] = {
            field: found[header] for field, header in _FIELD_HEADERS.items() if header in found
        }
        if not data["schema_version"].isdigit():
            raise EnvelopeError(f"header {HEADER_SCHEMA_VERSION!r}: not a positive integer")
        if not re.fullmatch(_TRACEPARENT, data.get("traceparent", "")):
            data.pop("traceparent", None)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = str(first["loc"][0]) if first["loc"] else "?"
            header = _FIELD_HEADERS.get(field, field)
            raise EnvelopeError(f"header {header!r}: {first['msg']}") from None

    @classmethod
    def new(
        cls,
        message: Message,
        *,
        source: str,
        message_id: str | None = None,
        caused_by: Envelope | None = None,
        correlation_id: str | None = None,
        traceparent: str | None = None,
        time: datetime | None = None,
    ) -> Envelope:
        """The envelope for publishing ``message`` now.

        Explicit arguments win over what ``caused_by`` propagates. Without any
        correlation id, the message's ``run_id`` (if it has one) is used, so
        every message of a run can be found by it.
        """
        if caused_by is not None:
            correlation_id = correlation_id or caused_by.correlation_id
            traceparent = traceparent or caused_by.traceparent
        if correlation_id is None:
            run_id = getattr(message, "run_id", None)
            correlation_id = run_id if isinstance(run_id, str) else None
        return cls(
            id=message_id or str(uuid.uuid4()),
            type=message.ce_type,
            source=source,
            time=time or datetime.now(UTC),
            schema_version=message.schema_version,
            traceparent=traceparent,
            correlation_id=correlation_id,
            causation_id=caused_by.id if caused_by is not None else None,
        )


def _collect(headers: Mapping[str, str | bytes] | Iterable[tuple[str, bytes]]) -> dict[str, str]:
    pairs: Iterable[tuple[str, str | bytes]] = (
        headers.items() if isinstance(headers, Mapping) else headers
    )
    known = set(_FIELD_HEADERS.values()) | {HEADER_CONTENT_TYPE}
    found: dict[str, str] = {}
    for raw_name, raw_value in pairs:
        name = raw_name.lower() if isinstance(raw_name, str) else str(raw_name)
        if name not in known:
            continue
        if isinstance(raw_value, bytes | bytearray):
            try:
                value = bytes(raw_value).decode("utf-8")
            except UnicodeDecodeError:
                raise EnvelopeError(f"header {name!r}: not valid UTF-8") from None
        elif isinstance(raw_value, str):
            value = raw_value
        else:
            raise EnvelopeError(f"header {name!r}: expected bytes or str")
        if name in found and found[name] != value:
            raise EnvelopeError(f"header {name!r}: present twice with different values")
        found[name] = value
    return found


def header_json_schema(
    *, ce_type: str | None = None, schema_version: int | None = None
) -> dict[str, Any]:
    """JSON Schema of the headers, for the AsyncAPI document."""
    props: dict[str, Any] = {
        HEADER_ID: {"type": "string", "pattern": _ENVELOPE_ID, "description": "Unique message id."},
        HEADER_TYPE: {"type": "string", "pattern": _CE_TYPE, "description": "Message type."},
        HEADER_SOURCE: {"type": "string", "maxLength": 256, "description": "Producing service."},
        HEADER_TIME: {"type": "string", "format": "date-time", "description": "RFC 3339, UTC."},
        HEADER_SPECVERSION: {"type": "string", "const": SPEC_VERSION},
        HEADER_SCHEMA_VERSION: {
            "type": "string",
            "pattern": "^[1-9][0-9]*$",
            "description": "Payload version of the body.",
        },
        HEADER_TRACEPARENT: {
            "type": "string",
            "pattern": _TRACEPARENT,
            "description": "W3C trace context.",
        },
        HEADER_CORRELATION: {
            "type": "string",
            "pattern": _ENVELOPE_ID,
            "description": "The run the message belongs to.",
        },
        HEADER_CAUSATION: {
            "type": "string",
            "pattern": _ENVELOPE_ID,
            "description": "Id of the message that caused this one.",
        },
        HEADER_CONTENT_TYPE: {"type": "string", "const": CONTENT_TYPE},
    }
    if ce_type is not None:
        props[HEADER_TYPE] = {"type": "string", "const": ce_type, "description": "Message type."}
    if schema_version is not None:
        props[HEADER_SCHEMA_VERSION] = {
            "type": "string",
            "enum": [str(v) for v in range(1, schema_version + 1)],
            "description": "Payload version of the body; older ones are upcast on read.",
        }
    return {"type": "object", "properties": props, "required": list(_REQUIRED)}
