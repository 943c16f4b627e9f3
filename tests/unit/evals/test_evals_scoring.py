"""Scoring cases against their checks, and suites against their thresholds."""

from __future__ import annotations

import pytest

from mindstream.evals.checks import (
    CaseResult,
    CheckOutcome,
    Grade,
    Observation,
    ObservedCall,
    score_case,
)
from mindstream.evals.scoring import percentile, summarise
from mindstream.evals.suite import Case, Thresholds

pytestmark = pytest.mark.unit


def case(*checks: dict[str, object], text: str = "q") -> Case:
    return Case.model_validate({"id": "c", "input": text, "checks": list(checks)})


def obs(output: str = "17 × 23 = 391", **kw: object) -> Observation:
    base: dict[str, object] = {"run_id": "r1", "status": "completed", "output": output,
                               "latency_ms": 100.0, "tokens": 50, "agent_ref": "a@1"}
    base.update(kw)
    return Observation(**base)  # type: ignore[arg-type]


async def test_text_checks_pass_and_fail_with_reasons() -> None:
    result = await score_case(case({"contains": ["391", "23"]}, {"not_contains": "steak"},
                                   {"regex": r"\b391\b"}), obs())
    assert result.passed and result.reasons == []
    bad = await score_case(case({"contains": "400"}, {"not_contains": "391"},
                                {"regex": "^nope"}), obs())
    assert not bad.passed
    assert len(bad.reasons) == 3
    assert "missing ['400']" in bad.reasons[0]
    assert "found ['391']" in bad.reasons[1]


async def test_a_failed_run_fails_the_case_unless_failure_is_expected() -> None:
    failed = obs(output=None, status="failed", error="input guardrail: prompt injection")
    assert not (await score_case(case(), failed)).passed
    expected = case({"status": "failed", "error_contains": "guardrail"})
    assert (await score_case(expected, failed)).passed
    wrong_reason = case({"status": "failed", "error_contains": "deadline"})
    assert "lacks 'deadline'" in (await score_case(wrong_reason, failed)).reasons[0]


async def test_json_schema_reads_structured_output_or_the_text() -> None:
    schema = {"json_schema": {"type": "object", "required": ["answer"],
                              "properties": {"answer": {"type": "integer"}}}}
    assert (await score_case(case(schema), obs('```json\n{"answer": 391}\n```'))).passed
    assert (await score_case(case(schema), obs("x", structured_output={"answer": 1}))).passed
    not_json = await score_case(case(schema), obs("three hundred"))
    assert "not JSON" in not_json.reasons[0]
    wrong = await score_case(case(schema), obs('{"answer": "391"}'))
    assert "$.answer" in wrong.reasons[0]


async def test_tool_checks_match_argument_values() -> None:
    calls = [ObservedCall("calculator", "c1", {"expression": "17 * 23"}, ("expression",))]
    ok = case({"tool": "calculator", "arguments": {"expression": r"17 \* 23"}})
    assert (await score_case(ok, obs(calls=calls))).passed
    other = case({"tool": "calculator", "arguments": {"expression": "^2"}})
    assert "arguments do not match" in (await score_case(other, obs(calls=calls))).reasons[0]
    missing = await score_case(case({"tool": "clock"}), obs(calls=calls))
    assert missing.reasons == ["tool clock: not called (called: calculator)"]
    assert (await score_case(case({"tool": "clock", "called": False}), obs(calls=calls))).passed
    twice = case({"tool": "calculator", "times": 2})
    assert "called 1 of 2" in (await score_case(twice, obs(calls=calls))).reasons[0]
    unseen = [ObservedCall("calculator", "c1", None, ("expression",))]
    assert "values were not seen" in (await score_case(ok, obs(calls=unseen))).reasons[0]
    exact = case({"tool": "calculator", "arguments": {"n": 3}})
    three = [ObservedCall("calculator", "c2", {"n": 3})]
    assert (await score_case(exact, obs(calls=three))).passed


async def test_budgets() -> None:
    result = await score_case(case({"max_latency_ms": 50}, {"max_tokens": 10}), obs())
    assert result.reasons == ["max_latency_ms 50: took 100 ms", "max_tokens 10: spent 50 tokens"]


async def test_rubric_is_skipped_without_a_grader_and_graded_with_one() -> None:
    rubric = case({"rubric": "gives the product"})
    skipped = await score_case(rubric, obs())
    assert skipped.passed and skipped.notes == ["rubric: no grader model configured"]

    async def strict(r: str, i: str, a: str) -> Grade:
        return Grade("391" in a and r == "gives the product" and i == "q", "wrong product")

    assert (await score_case(rubric, obs(), strict)).passed
    assert (await score_case(rubric, obs("400"), strict)).reasons == ["rubric: wrong product"]

    async def broken(r: str, i: str, a: str) -> Grade:
        raise ConnectionError("grader down")

    assert "grader error: grader down" in (await score_case(rubric, obs(), broken)).reasons[0]


def result(passed: bool, latency: float, tokens: int = 10, status: str = "completed") -> CaseResult:
    outcomes = [] if passed else [CheckOutcome("failed", "contains", "missing")]
    return CaseResult("c", obs(latency_ms=latency, tokens=tokens, status=status), outcomes)


def test_thresholds_each_reported() -> None:
    results = [result(True, 100), result(True, 200), result(False, 900, 500)]
    verdict = summarise(results, Thresholds(min_pass_rate=0.6, max_p95_latency_ms=500,
                                            max_tokens=1000))
    assert verdict.passed == 2 and verdict.pass_rate == pytest.approx(2 / 3)
    assert verdict.p95_latency_ms == 900
    assert [t.ok for t in verdict.thresholds] == [True, False, True]
    assert not verdict.ok
    assert verdict.failures == ["max_p95_latency_ms: p95 900 ms, limit 500 ms"]
    assert summarise(results[:2], Thresholds()).ok
    assert not summarise(results, Thresholds()).ok  # default: every case must pass


def test_timeouts_do_not_count_towards_latency() -> None:
    verdict = summarise([result(False, 120_000, status="timeout"), result(True, 10)],
                        Thresholds(min_pass_rate=0, max_p95_latency_ms=100))
    assert verdict.p95_latency_ms == 10 and verdict.ok


def test_percentile() -> None:
    assert percentile([], 95) is None
    assert percentile([5.0], 95) == 5.0
    assert percentile([float(i) for i in range(1, 101)], 95) == 95.0
