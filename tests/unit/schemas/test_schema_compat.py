from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

import pytest
from pydantic import Field, create_model

from schemas.base import Message
from schemas.compat import check_compatible
from schemas.export import default_root, topic_json_schema
from schemas.runs import RunReady, RunRequested
from schemas.topics import TOPICS

pytestmark = pytest.mark.unit


def _schema(model: type[Message]) -> dict[str, Any]:
    return model.model_json_schema(mode="validation")


def _variant(base: type[Message], **fields: Any) -> type[Message]:
    return create_model(base.__name__, __base__=base, **fields)


def test_committed_snapshots_hold() -> None:
    for spec in TOPICS:
        path = default_root() / "schemas" / "contracts" / f"{spec.name}.json"
        old = json.loads(path.read_text())
        assert check_compatible(old, topic_json_schema(spec)) == [], spec.name


def test_identical_schemas_are_compatible() -> None:
    for spec in TOPICS:
        assert check_compatible(_schema(spec.message), _schema(spec.message)) == []


def test_type_change_names_the_field() -> None:
    changed = _variant(RunRequested, input=(int, Field(description="now a number")))
    problems = check_compatible(_schema(RunRequested), _schema(changed))
    assert problems == ["input: type changed from string to integer"]


def test_adding_optional_field_is_fine() -> None:
    added = _variant(RunRequested, locale=(str | None, Field(default=None, description="x")))
    assert check_compatible(_schema(RunRequested), _schema(added)) == []


def test_new_required_field_breaks() -> None:
    added = _variant(RunRequested, locale=(str, Field(description="x")))
    assert check_compatible(_schema(RunRequested), _schema(added)) == ["locale: new required field"]


def test_optional_to_required_breaks() -> None:
    required = _variant(RunRequested, reply_topic=(str, Field(description="x")))
    problems = check_compatible(_schema(RunRequested), _schema(required))
    assert "reply_topic: field changed from optional to required" in problems
    assert "reply_topic: null no longer accepted" in problems


def test_removed_or_renamed_field_breaks() -> None:
    old = _schema(RunRequested)
    new = json.loads(json.dumps(old))
    new["properties"]["text"] = new["properties"].pop("input")
    new["required"] = [("text" if r == "input" else r) for r in new["required"]]
    problems = check_compatible(old, new)
    assert "input: field removed" in problems
    assert "text: new required field" in problems


def test_tightened_bounds_break_loosened_do_not() -> None:
    tight = _variant(RunRequested, input=(str, Field(max_length=100, description="x")))
    assert check_compatible(_schema(RunRequested), _schema(tight)) == [
        "input: max_length tightened from 32000 to 100"
    ]
    loose = _variant(RunRequested, input=(str, Field(min_length=1, description="x")))
    assert check_compatible(_schema(RunRequested), _schema(loose)) == []
    assert check_compatible(_schema(loose), _schema(RunRequested)) == [
        "input: max_length tightened from none to 32000"
    ]


def test_enum_value_removed_breaks_added_is_fine() -> None:
    class Fewer(StrEnum):
        LOW = "low"
        NORMAL = "normal"

    class More(StrEnum):
        LOW = "low"
        NORMAL = "normal"
        HIGH = "high"
        URGENT = "urgent"

    fewer = _variant(RunRequested, priority=(Fewer, Field(default=Fewer.NORMAL, description="x")))
    more = _variant(RunRequested, priority=(More, Field(default=More.NORMAL, description="x")))
    assert check_compatible(_schema(RunRequested), _schema(fewer)) == [
        'priority: enum value removed: "high"'
    ]
    assert check_compatible(_schema(RunRequested), _schema(more)) == []


def test_nested_changes_follow_refs() -> None:
    old = _schema(RunReady)
    new = json.loads(json.dumps(old))
    new["$defs"]["ChatMessage"]["properties"]["content"]["anyOf"][0]["maxLength"] = 10
    del new["$defs"]["MemoryItem"]["properties"]["topic"]
    new["$defs"]["KnowledgeHit"]["properties"]["score"]["maximum"] = 0.5
    problems = check_compatible(old, new)
    assert "context.history[].content: max_length tightened from 256000 to 10" in problems
    assert "request.input: max_length tightened" not in " ".join(problems)
    assert "context.memories[].topic: field removed" in problems
    assert "context.knowledge[].score: maximum tightened from 1.0 to 0.5" in problems


def test_pattern_and_unknown_keywords_are_reported() -> None:
    old = _schema(RunRequested)
    new = json.loads(json.dumps(old))
    new["properties"]["run_id"]["pattern"] = "^[a-z]+$"
    new["properties"]["user_id"]["not"] = {"const": "root"}
    problems = check_compatible(old, new)
    assert any(p.startswith("run_id: pattern changed") for p in problems)
    assert "user_id: unsupported keyword 'not' changed" in problems
