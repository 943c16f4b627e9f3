"""Upcasters: turn an older payload version into the one a model reads.

A compatible evolution of a message inside one topic version bumps the
model's ``schema_version``; messages already on the topic keep the old
shape. :func:`schemas.codec.decode` runs the registered chain
``v -> v+1 -> ... -> current`` on the raw JSON before validation, so
handlers only ever see the newest model. Upcasters are pure ``dict -> dict``
functions and must not mutate their input.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from schemas.base import Message
from schemas.errors import ContractError

__all__ = ["Upcaster", "register_upcaster", "registered_upcasters", "upcast"]

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

_REGISTRY: dict[tuple[type[Message], int], Upcaster] = {}


def register_upcaster(message_type: type[Message], from_version: int, fn: Upcaster) -> Upcaster:
    """Register ``fn`` to turn a ``from_version`` payload into ``from_version + 1``.

    Returns ``fn`` so it can be used from a decorator factory. Registering
    twice for the same step is refused: two upcasters for one step means a
    version was reused.
    """
    if not 1 <= from_version < message_type.schema_version:
        raise ValueError(
            f"{message_type.__name__} is at schema_version {message_type.schema_version}; "
            f"cannot upcast from version {from_version}"
        )
    key = (message_type, from_version)
    if key in _REGISTRY and _REGISTRY[key] is not fn:
        raise ValueError(f"an upcaster for {message_type.__name__} v{from_version} already exists")
    _REGISTRY[key] = fn
    return fn


def registered_upcasters(message_type: type[Message]) -> dict[int, Upcaster]:
    """The upcasters of a type, by the version they start from."""
    return {v: fn for (t, v), fn in _REGISTRY.items() if t is message_type}


def upcast(
    message_type: type[Message], payload: dict[str, Any], from_version: int
) -> dict[str, Any]:
    """Bring ``payload`` from ``from_version`` to ``message_type.schema_version``."""
    current = copy.deepcopy(payload)
    for version in range(from_version, message_type.schema_version):
        fn = _REGISTRY.get((message_type, version))
        if fn is None:
            raise ContractError(
                f"{message_type.ce_type}: no upcaster from schema_version {version} "
                f"to {version + 1}"
            )
        try:
            current = fn(current)
        except Exception as exc:
            raise ContractError(
                f"{message_type.ce_type}: upcasting from schema_version {version} failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(current, dict):
            raise ContractError(
                f"{message_type.ce_type}: upcaster from v{version} returned "
                f"{type(current).__name__}, not an object"
            )
    return current
