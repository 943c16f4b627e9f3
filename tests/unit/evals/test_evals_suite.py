"""Suite files: what loads, and bad suites refused with a message naming the place."""

from __future__ import annotations

from pathlib import Path

import pytest

from mindstream.evals.suite import (
    ContainsCheck,
    StatusCheck,
    SuiteError,
    ToolCheck,
    load_suite,
    parse_suite,
)

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]


def test_a_full_suite_loads_with_every_check_kind() -> None:
    suite = parse_suite({
        "agent": "assistant",
        "thresholds": {"min_pass_rate": 0.5, "max_p95_latency_ms": 1000, "max_tokens": 10},
        "cases": [{"id": "a", "input": "hi", "session": ["earlier"], "checks": [
            {"contains": "x"}, {"not_contains": ["y", "z"]}, {"regex": "^a"},
            {"json_schema": {"type": "object"}}, {"tool": "calculator", "arguments": {"e": "1"}},
            {"rubric": "good"}, {"max_latency_ms": 5}, {"max_tokens": 3},
            {"status": "failed", "error_contains": "guardrail"}]}],
    }, name="mine")
    assert suite.suite == "mine"
    kinds = [c.kind for c in suite.cases[0].checks]
    assert kinds == ["contains", "not_contains", "regex", "json_schema", "tool", "rubric",
                     "max_latency_ms", "max_tokens", "status"]
    first = suite.cases[0].checks[0]
    assert isinstance(first, ContainsCheck) and first.contains == ["x"]
    assert isinstance(suite.cases[0].checks[4], ToolCheck)
    assert isinstance(suite.cases[0].checks[-1], StatusCheck)
    assert suite.cases[0].expects_status


@pytest.mark.parametrize(("doc", "message"), [
    ({"cases": []}, "cases"),
    ({"cases": [{"id": "a", "input": "x"}, {"id": "a", "input": "y"}]}, "duplicate case id 'a'"),
    ({"cases": [{"id": "a", "input": "x", "checks": [{"contanis": "x"}]}]}, "exactly one of"),
    ({"cases": [{"id": "a", "input": "x", "checks": [{"contains": "x", "regex": "y"}]}]},
     "exactly one of"),
    ({"cases": [{"id": "a", "input": "x", "checks": [{"regex": "("}]}]}, "bad regex"),
    ({"cases": [{"id": "a", "input": "x", "checks": [{"contains": "x", "typo": 1}]}]}, "typo"),
    ({"cases": [{"id": "a b", "input": "x"}]}, "cases.0.id"),
    ({"thresholds": {"min_pass_rate": 2}, "cases": [{"id": "a", "input": "x"}]}, "min_pass_rate"),
    ([1, 2], "a suite is a mapping"),
])
def test_bad_suites_are_refused_clearly(doc: object, message: str) -> None:
    with pytest.raises(SuiteError, match=message):
        parse_suite(doc)


def test_unreadable_files_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("cases: [unclosed")
    with pytest.raises(SuiteError, match=r"bad\.yaml: not valid YAML"):
        load_suite(bad)
    with pytest.raises(SuiteError, match="cannot read"):
        load_suite(tmp_path / "missing.yaml")


def test_the_example_suite_loads() -> None:
    suite = load_suite(REPO / "evals" / "assistant.yaml")
    assert suite.agent == "assistant"
    assert len(suite.cases) >= 3
