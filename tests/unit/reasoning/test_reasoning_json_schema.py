"""The small JSON Schema validator used for structured model output."""

from __future__ import annotations

from typing import Any

import pytest

from services.reasoning.json_schema import validate

pytestmark = pytest.mark.unit

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 5},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 2},
        "mood": {"enum": ["happy", "sad"]},
        "kind": {"const": "person"},
        "score": {"type": ["number", "null"]},
        "ref": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
    },
    "required": ["name"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    "value",
    [
        {"name": "ann"},
        {"name": "bo", "age": 3, "tags": ["x"], "mood": "sad", "kind": "person", "score": None},
        {"name": "bo", "age": 3.0, "score": 1.5, "ref": 7},
    ],
)
def test_valid_values(value: Any) -> None:
    assert validate(value, SCHEMA) == []


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ([], "$: expected object, got list"),
        ({}, "$: missing required property 'name'"),
        ({"name": 1}, "$.name: expected string, got int"),
        ({"name": ""}, "$.name: shorter than 1"),
        ({"name": "toolong"}, "$.name: longer than 5"),
        ({"name": "a", "age": True}, "$.age: expected integer, got bool"),
        ({"name": "a", "age": 1.5}, "$.age: expected integer, got float"),
        ({"name": "a", "age": -1}, "$.age: below minimum 0"),
        ({"name": "a", "age": 200}, "$.age: above maximum 150"),
        ({"name": "a", "tags": []}, "$.tags: fewer than 1 items"),
        ({"name": "a", "tags": ["a", "b", "c"]}, "$.tags: more than 2 items"),
        ({"name": "a", "tags": [1]}, "$.tags[0]: expected string, got int"),
        ({"name": "a", "mood": "meh"}, "$.mood: 'meh' is not one of ['happy', 'sad']"),
        ({"name": "a", "kind": "dog"}, "$.kind: must be 'person'"),
        ({"name": "a", "score": "x"}, "$.score: expected number or null, got str"),
        ({"name": "a", "ref": 1.5}, "$.ref: matches none of anyOf"),
        ({"name": "a", "extra": 1}, "$: unexpected property 'extra'"),
    ],
)
def test_invalid_values(value: Any, problem: str) -> None:
    assert validate(value, SCHEMA) == [problem]


def test_additional_properties_schema_and_unknown_keywords() -> None:
    schema = {"type": "object", "additionalProperties": {"type": "integer"}, "format": "x"}
    assert validate({"a": 1}, schema) == []
    assert validate({"a": "1"}, schema) == ["$.a: expected integer, got str"]
