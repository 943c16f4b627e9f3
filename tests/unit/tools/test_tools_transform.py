"""json_extract, text_transform and (sandboxed) regex_extract."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.tools.builtins.transform import (
    TOOLS,
    json_extract,
    parse_path,
    regex_extract,
    text_transform,
)
from services.tools.errors import ToolFailedError
from services.tools.executor import ExecutionRequest, Executor
from services.tools.registry import ToolRegistry, spec_of

pytestmark = pytest.mark.unit

DOC: dict[str, Any] = {
    "store": {
        "books": [
            {"title": "Dune", "price": 9.5, "tags": ["sf"]},
            {"title": "Emma", "price": 7.0, "tags": []},
        ],
        "odd key": {"a.b": 1},
    }
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("$", DOC),
        ("$.store.books[0].title", "Dune"),
        ("$.store.books[-1].price", 7.0),
        ("$.store.books[*].title", ["Dune", "Emma"]),
        ("$.store.books.*.tags", [["sf"], []]),
        ("$['store'][\"odd key\"]['a.b']", 1),
        ("$.store['odd key'].*", [1]),
    ],
)
def test_paths(path: str, expected: Any) -> None:
    assert json_extract(data=DOC, path=path) == {"path": path, "value": expected}


def test_json_text_is_parsed() -> None:
    assert json_extract(data=json.dumps(DOC), path="$.store.books[1].title")["value"] == "Emma"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("store.books", "starts with '\\$'"),
        ("$.store.books[0", "position 13"),
        ("$.store..books", "position 7"),
        ("$.store.nope", "\\$.store: no key 'nope' \\(keys: books, odd key\\)"),
        ("$.store.books[5]", "index out of range \\(length 2\\)"),
        ("$.store[0]", "expected a list for \\[0\\], got an object"),
        ("$.store.books.title", "expected an object for .title, got a list"),
        ("$.store.books[0].title[*]", "not a list or object"),
        ("$" + ".a" * 300, "longer than 500"),
    ],
)
def test_path_errors_say_where(path: str, message: str) -> None:
    with pytest.raises(ToolFailedError, match=message):
        json_extract(data=DOC, path=path)


def test_bad_json_and_oversized_input() -> None:
    with pytest.raises(ToolFailedError, match="not valid JSON"):
        json_extract(data="{oops", path="$")
    with pytest.raises(ToolFailedError, match="input longer"):
        json_extract(data=" " * 200_001, path="$")
    with pytest.raises(ToolFailedError, match="input larger"):
        json_extract(data=["x" * 1000] * 300, path="$")


def test_parse_path_unescapes_quoted_keys() -> None:
    assert parse_path("$['it\\'s'][2][*]") == ["it's", 2, None]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"operation": "upper", "text": "abc"}, {"result": "ABC"}),
        ({"operation": "lower", "text": "AbC"}, {"result": "abc"}),
        ({"operation": "strip", "text": "  x \n"}, {"result": "x"}),
        ({"operation": "split", "text": "a b  c"}, {"result": ["a", "b", "c"], "truncated": False}),
        (
            {"operation": "split", "text": "a,b", "separator": ","},
            {"result": ["a", "b"], "truncated": False},
        ),
        ({"operation": "join", "items": ["a", "b"], "separator": "-"}, {"result": "a-b"}),
        ({"operation": "join", "items": []}, {"result": ""}),
    ],
)
def test_text_operations(kwargs: dict[str, Any], expected: dict[str, Any]) -> None:
    assert text_transform(**kwargs) == expected


def test_text_operation_misuse() -> None:
    with pytest.raises(ToolFailedError, match="join needs 'items'"):
        text_transform(operation="join", text="abc")
    with pytest.raises(ToolFailedError, match="only for join"):
        text_transform(operation="upper", items=["a"])
    with pytest.raises(ToolFailedError, match="must not be empty"):
        text_transform(operation="split", text="abc", separator="")
    with pytest.raises(ToolFailedError, match="joined text longer"):
        text_transform(operation="join", items=["x" * 100_000] * 3)


def test_text_size_bounds_are_in_the_schema() -> None:
    model = spec_of(text_transform).params_model
    with pytest.raises(ValueError, match="at most 200000 characters"):
        model.model_validate({"operation": "upper", "text": "x" * 200_001})


def test_regex_extract_in_process() -> None:
    assert regex_extract(text="a1 b22 c333", pattern=r"[a-z](\d+)", group=1) == {
        "matches": ["1", "22", "333"],
        "truncated": False,
    }
    assert regex_extract(text="x" * 10, pattern="x", max_matches=3)["truncated"] is True
    with pytest.raises(ToolFailedError, match="invalid regular expression"):
        regex_extract(text="a", pattern="(")
    with pytest.raises(ToolFailedError, match="has 0 groups"):
        regex_extract(text="a", pattern="a", group=1)


def test_module_exports_three_tools_and_regex_is_sandboxed() -> None:
    specs = {spec_of(t).name: spec_of(t) for t in TOOLS}
    assert set(specs) == {"json_extract", "text_transform", "regex_extract"}
    assert specs["regex_extract"].sandbox is not None
    assert specs["json_extract"].sandbox is None


async def test_catastrophic_regex_is_killed_not_left_running() -> None:
    executor = Executor(ToolRegistry(TOOLS))
    outcome = await executor.execute(
        ExecutionRequest(
            call_id="c",
            tool="regex_extract",
            arguments={"text": "a" * 40 + "!", "pattern": "(a+)+$"},
            agent_allowlist=["regex_extract"],
            deadline=datetime.now(UTC) + timedelta(seconds=0.6),
        )
    )
    assert outcome.error_code == "timeout"
