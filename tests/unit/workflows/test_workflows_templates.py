from __future__ import annotations

import pytest

from schemas.workflows import Check
from services.workflows.templates import Scope, evaluate, extract, parse_yes, render, render_value

pytestmark = pytest.mark.unit

SCOPE = Scope(input="in", outputs={"a": '{"v": [1, {"ok": true}], "s": "x"}', "b": "B"},
              iteration=2, workflow_run_id="wr-1")


def test_render_names_values_and_keeps_unknown_placeholders() -> None:
    assert render("{{input}}/{{ steps.b.output }}/{{iteration}}/{{workflow_run_id}}",
                  SCOPE) == "in/B/2/wr-1"
    assert render("{{steps.missing.output}}|{{nope}}", SCOPE) == "|{{nope}}"
    assert render_value({"x": ["{{input}}", 3], "y": "{{steps.b.output}}"}, SCOPE) == {
        "x": ["in", 3], "y": "B"}


def test_json_path() -> None:
    text = SCOPE.outputs["a"]
    assert extract(text, "$.v[1].ok") is True
    assert extract(text, "$.s") == "x"
    assert extract(text, "$.v[5]") is None
    assert extract("not json", "$.s") is None


@pytest.mark.parametrize(
    ("check", "value", "held"),
    [
        ({"equals": "B"}, "B", True),
        ({"equals": "B", "negate": True}, "B", False),
        ({"regex": "^APPROVED"}, "APPROVED!", True),
        ({"regex": "^APPROVED"}, "not APPROVED", False),
        ({"json_path": "$.v[1].ok"}, '{"v": [0, {"ok": true}]}', True),
        ({"json_path": "$.missing"}, '{"v": 1}', False),
        ({"json_path": "$.n", "equals": "42"}, '{"n": 42}', True),
        ({"json_path": "$.flag", "equals": "true"}, '{"flag": true}', True),
        ({"json_path": "$.n", "regex": "^4"}, "not json", False),
    ],
)
def test_evaluate(check: dict[str, object], value: str, held: bool) -> None:
    assert evaluate(Check.model_validate({"value": value, **check}), value) is held


def test_parse_yes() -> None:
    assert parse_yes("Yes, it is.") and parse_yes("TRUE") and parse_yes("**yes**")
    assert not parse_yes("No.") and not parse_yes("yesterday") and not parse_yes(None)
