"""A small JSON Schema validator for structured model output.

``jsonschema`` is not a dependency; structured output needs only the subset agents
declare: ``type`` (one or a list), ``properties``, ``required``,
``additionalProperties`` (bool or schema), ``items``, ``enum``, ``const``,
``minLength``/``maxLength``, ``minimum``/``maximum``, ``minItems``/``maxItems``,
``anyOf``. Unknown keywords are ignored (as JSON Schema itself does), so a richer
schema is checked on the subset rather than rejected.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["validate"]

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
    "null": (type(None),),
}


def _is_type(value: Any, name: str) -> bool:
    if name in ("number", "integer") and isinstance(value, bool):
        return False  # bool is an int in Python, never in JSON
    if name == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES.get(name, (object,)))


def validate(value: Any, schema: Mapping[str, Any], path: str = "$") -> list[str]:
    """Every problem found, each as ``"<json path>: <what is wrong>"``; empty means valid."""
    kind = schema.get("type")
    if kind is not None:
        kinds = [kind] if isinstance(kind, str) else list(kind)
        if not any(_is_type(value, k) for k in kinds):
            return [f"{path}: expected {' or '.join(kinds)}, got {type(value).__name__}"]
    problems = _generic(value, schema, path)
    if isinstance(value, str):
        problems += _string(value, schema, path)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        problems += _number(value, schema, path)
    elif isinstance(value, dict):
        problems += _object(value, schema, path)
    elif isinstance(value, list):
        problems += _array(value, schema, path)
    return problems


def _generic(value: Any, schema: Mapping[str, Any], path: str) -> list[str]:
    problems = []
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{path}: {value!r} is not one of {schema['enum']!r}")
    if "const" in schema and value != schema["const"]:
        problems.append(f"{path}: must be {schema['const']!r}")
    if "anyOf" in schema and all(validate(value, s, path) for s in schema["anyOf"]):
        problems.append(f"{path}: matches none of anyOf")
    return problems


def _string(value: str, schema: Mapping[str, Any], path: str) -> list[str]:
    problems = []
    if len(value) < schema.get("minLength", 0):
        problems.append(f"{path}: shorter than {schema['minLength']}")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        problems.append(f"{path}: longer than {schema['maxLength']}")
    return problems


def _number(value: float, schema: Mapping[str, Any], path: str) -> list[str]:
    problems = []
    if "minimum" in schema and value < schema["minimum"]:
        problems.append(f"{path}: below minimum {schema['minimum']}")
    if "maximum" in schema and value > schema["maximum"]:
        problems.append(f"{path}: above maximum {schema['maximum']}")
    return problems


def _object(value: dict[str, Any], schema: Mapping[str, Any], path: str) -> list[str]:
    props: Mapping[str, Any] = schema.get("properties", {})
    problems = [
        f"{path}: missing required property '{name}'"
        for name in schema.get("required", [])
        if name not in value
    ]
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        if key in props:
            problems += validate(item, props[key], f"{path}.{key}")
        elif extra is False:
            problems.append(f"{path}: unexpected property '{key}'")
        elif isinstance(extra, Mapping):
            problems += validate(item, extra, f"{path}.{key}")
    return problems


def _array(value: list[Any], schema: Mapping[str, Any], path: str) -> list[str]:
    problems = []
    if len(value) < schema.get("minItems", 0):
        problems.append(f"{path}: fewer than {schema['minItems']} items")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        problems.append(f"{path}: more than {schema['maxItems']} items")
    items = schema.get("items")
    if isinstance(items, Mapping):
        for i, item in enumerate(value):
            problems += validate(item, items, f"{path}[{i}]")
    return problems
