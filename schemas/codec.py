"""Bytes <-> messages, with errors a dead-letter reader can act on.

:func:`decode` is the only way consumers should turn a Kafka record into a
model: it checks the envelope agrees with the model (type, version), runs
upcasters for older payloads and validates. Every failure is a
:class:`ContractError` whose text says what is wrong and where, without
echoing the (possibly huge or sensitive) offending value.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import ValidationError

from schemas.base import Message
from schemas.envelope import Envelope
from schemas.errors import ContractError
from schemas.upcast import upcast

__all__ = ["MAX_BODY_BYTES", "ContractError", "decode", "describe_validation_error", "encode"]

MAX_BODY_BYTES = 1024 * 1024
"""Kafka's default ``message.max.bytes``; a bigger body must be stored by reference."""

M = TypeVar("M", bound=Message)

_MAX_REPORTED_ERRORS = 5


def encode(message: Message) -> bytes:
    """Compact JSON of the message (the Kafka record value)."""
    body = message.model_dump_json().encode()
    if len(body) > MAX_BODY_BYTES:
        raise ContractError(
            f"{message.ce_type}: encoded body is {len(body)} bytes, above {MAX_BODY_BYTES}"
        )
    return body


def decode(message_type: type[M], body: bytes, envelope: Envelope) -> M:
    """Validate ``body`` as ``message_type``; raises only :class:`ContractError`."""
    name = message_type.ce_type
    if envelope.type != name:
        raise ContractError(f"ce_type is {envelope.type!r}, expected {name!r}")
    if envelope.schema_version > message_type.schema_version:
        raise ContractError(
            f"{name}: schema_version {envelope.schema_version} is newer than "
            f"{message_type.schema_version}, the newest this consumer understands; "
            "upgrade the consumer"
        )
    if not isinstance(body, bytes | bytearray | memoryview):
        raise ContractError(f"{name}: body must be bytes, got {type(body).__name__}")
    if len(body) > MAX_BODY_BYTES:
        raise ContractError(f"{name}: body is {len(body)} bytes, above {MAX_BODY_BYTES}")
    try:
        if envelope.schema_version == message_type.schema_version:
            return message_type.model_validate_json(bytes(body))
        payload = _parse_object(name, bytes(body))
        return message_type.model_validate(upcast(message_type, payload, envelope.schema_version))
    except ValidationError as exc:
        raise ContractError(f"{name}: {describe_validation_error(exc)}") from None


def _parse_object(name: str, body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ContractError(f"{name}: invalid JSON: {str(exc)[:200]}") from None
    if not isinstance(payload, dict):
        raise ContractError(f"{name}: body must be a JSON object, got {type(payload).__name__}")
    return payload


def describe_validation_error(exc: ValidationError) -> str:
    """``field.path: message; ...`` for the first few errors, without input values."""
    parts: list[str] = []
    for error in exc.errors(include_url=False, include_input=False)[:_MAX_REPORTED_ERRORS]:
        loc = ".".join(str(p) for p in error["loc"]) or "body"
        if error["type"] == "json_invalid":
            return f"invalid JSON: {error['msg']}"
        parts.append(f"{loc}: {error['msg']}")
    more = exc.error_count() - _MAX_REPORTED_ERRORS
    if more > 0:
        parts.append(f"and {more} more errors")
    return "; ".join(parts)
