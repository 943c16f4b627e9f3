"""Scoring one case: what the run did (an :class:`Observation`) against the case's checks.

Everything here is pure except rubric grading, which asks a :class:`Grader` (a
model) and is skipped with a note when none is configured: a skipped check
neither passes nor fails a case, and the report says it was skipped.

A case without a ``status`` check expects its run to complete; a run that failed
fails the case whatever its other checks say.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from mindstream.evals.suite import (
    Case,
    Check,
    ContainsCheck,
    JsonSchemaCheck,
    LatencyCheck,
    NotContainsCheck,
    RegexCheck,
    RubricCheck,
    StatusCheck,
    TokensCheck,
    ToolCheck,
)
from services.reasoning.json_schema import validate

__all__ = [
    "CaseResult",
    "CheckOutcome",
    "Grade",
    "Grader",
    "Observation",
    "ObservedCall",
    "check",
    "describe",
    "score_case",
]


@dataclass(frozen=True)
class ObservedCall:
    """A tool (or knowledge, or delegation) call the run asked for.

    ``arguments`` is ``None`` when only the argument names are known (the run's
    events carry names only; values come from the tool-call messages).
    """

    tool: str
    call_id: str | None = None
    arguments: dict[str, Any] | None = None
    argument_names: tuple[str, ...] = ()


@dataclass
class Observation:
    """What one case's run did, as the eval runner saw it."""

    run_id: str
    status: str  # completed | failed | cancelled | timeout | setup_failed
    output: str | None = None
    structured_output: dict[str, Any] | None = None
    error: str | None = None
    latency_ms: float = 0.0
    tokens: int = 0
    agent_ref: str = ""
    calls: list[ObservedCall] = field(default_factory=list)


@dataclass(frozen=True)
class CheckOutcome:
    verdict: Literal["passed", "failed", "skipped"]
    check: str
    reason: str = ""


@dataclass(frozen=True)
class Grade:
    passed: bool
    reason: str


Grader = Callable[[str, str, str], Awaitable[Grade]]
"""``grader(rubric, input, answer)``: a model's verdict on the answer."""


@dataclass
class CaseResult:
    case_id: str
    observation: Observation
    outcomes: list[CheckOutcome]

    @property
    def passed(self) -> bool:
        return all(o.verdict != "failed" for o in self.outcomes)

    @property
    def reasons(self) -> list[str]:
        return [f"{o.check}: {o.reason}" for o in self.outcomes if o.verdict == "failed"]

    @property
    def notes(self) -> list[str]:
        return [f"{o.check}: {o.reason}" for o in self.outcomes if o.verdict == "skipped"]


_NAMES: dict[type, Callable[[Any], str]] = {
    ContainsCheck: lambda c: f"contains {c.contains}",
    NotContainsCheck: lambda c: f"not_contains {c.not_contains}",
    RegexCheck: lambda c: f"regex /{c.regex}/",
    JsonSchemaCheck: lambda c: "json_schema",
    ToolCheck: lambda c: f"tool {c.tool}" + ("" if c.called else " not called"),
    RubricCheck: lambda c: "rubric",
    LatencyCheck: lambda c: f"max_latency_ms {c.max_latency_ms:g}",
    TokensCheck: lambda c: f"max_tokens {c.max_tokens}",
    StatusCheck: lambda c: f"status {c.status}",
}


def describe(c: Check) -> str:
    """A short name for a check in reports."""
    return _NAMES[type(c)](c)


def _clip(text: str | None, n: int = 120) -> str:
    text = (text or "").replace("\n", " ")
    return text if len(text) <= n else text[: n - 1] + "…"


def _answer_json(obs: Observation) -> tuple[Any, str | None]:
    if obs.structured_output is not None:
        return obs.structured_output, None
    text = (obs.output or "").strip()
    if text.startswith("```"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
        text = text.rsplit("```", 1)[0]
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        return None, f"the answer is not JSON ({exc.msg} at {exc.pos})"


def _value_matches(expected: Any, actual: Any) -> bool:
    if isinstance(expected, str):
        text = actual if isinstance(actual, str) else json.dumps(actual, sort_keys=True)
        return re.search(expected, text) is not None
    return bool(expected == actual)


def _tool_check(c: ToolCheck, obs: Observation) -> CheckOutcome:
    name = describe(c)
    calls = [k for k in obs.calls if k.tool == c.tool]
    if not c.called:
        return (CheckOutcome("failed", name, f"was called {len(calls)} time(s)") if calls
                else CheckOutcome("passed", name))
    if not calls:
        seen = sorted({k.tool for k in obs.calls})
        return CheckOutcome("failed", name, "not called" + (
            f" (called: {', '.join(seen)})" if seen else " (no tool was called)"))
    if not c.arguments:
        ok = len(calls) >= c.times
        return CheckOutcome("passed" if ok else "failed", name,
                            "" if ok else f"called {len(calls)} of {c.times} time(s)")
    matching, unknown = 0, 0
    problems: list[str] = []
    for k in calls:
        if k.arguments is None:
            unknown += 1
            continue
        bad = [key for key, want in c.arguments.items()
               if key not in k.arguments or not _value_matches(want, k.arguments[key])]
        if bad:
            problems.append(", ".join(f"{key}={k.arguments.get(key)!r}" for key in bad))
        else:
            matching += 1
    if matching >= c.times:
        return CheckOutcome("passed", name)
    if unknown and not problems:
        return CheckOutcome("failed", name, "argument values were not seen for the call(s)")
    return CheckOutcome("failed", name, f"arguments do not match {c.arguments}: got "
                        + "; ".join(problems[:3]))


def _verdict(ok: bool, name: str, why: str) -> CheckOutcome:
    return CheckOutcome("passed", name) if ok else CheckOutcome("failed", name, why)


def _fold(text: str, ignore_case: bool) -> str:
    return text.lower() if ignore_case else text


def _contains(c: ContainsCheck, obs: Observation, name: str) -> CheckOutcome:
    answer = obs.output or ""
    hay = _fold(answer, c.ignore_case)
    missing = [s for s in c.contains if _fold(s, c.ignore_case) not in hay]
    return _verdict(not missing, name, f"missing {missing} in {_clip(answer)!r}")


def _not_contains(c: NotContainsCheck, obs: Observation, name: str) -> CheckOutcome:
    answer = obs.output or ""
    hay = _fold(answer, c.ignore_case)
    found = [s for s in c.not_contains if _fold(s, c.ignore_case) in hay]
    return _verdict(not found, name, f"found {found} in {_clip(answer)!r}")


def _regex_check(c: RegexCheck, obs: Observation, name: str) -> CheckOutcome:
    answer = obs.output or ""
    hit = re.search(c.regex, answer, re.IGNORECASE if c.ignore_case else 0)
    return _verdict(hit is not None, name, f"no match in {_clip(answer)!r}")


def _json_schema(c: JsonSchemaCheck, obs: Observation, name: str) -> CheckOutcome:
    value, problem = _answer_json(obs)
    if problem is not None:
        return CheckOutcome("failed", name, problem)
    problems = validate(value, c.json_schema)
    return _verdict(not problems, name, "; ".join(problems[:3]))


def _latency(c: LatencyCheck, obs: Observation, name: str) -> CheckOutcome:
    return _verdict(obs.latency_ms <= c.max_latency_ms, name, f"took {obs.latency_ms:.0f} ms")


def _tokens(c: TokensCheck, obs: Observation, name: str) -> CheckOutcome:
    return _verdict(obs.tokens <= c.max_tokens, name, f"spent {obs.tokens} tokens")


def _status(c: StatusCheck, obs: Observation, name: str) -> CheckOutcome:
    if obs.status != c.status:
        return CheckOutcome("failed", name, f"run {obs.status}"
                            + (f": {_clip(obs.error)}" if obs.error else ""))
    lacks = c.error_contains and c.error_contains.lower() not in (obs.error or "").lower()
    return _verdict(not lacks, name, f"error {_clip(obs.error)!r} lacks {c.error_contains!r}")


def _ungraded(c: RubricCheck, obs: Observation, name: str) -> CheckOutcome:
    return CheckOutcome("skipped", name, "no grader model configured")


_CHECKS: dict[type, Callable[[Any, Observation, str], CheckOutcome]] = {
    ContainsCheck: _contains,
    NotContainsCheck: _not_contains,
    RegexCheck: _regex_check,
    JsonSchemaCheck: _json_schema,
    ToolCheck: lambda c, obs, _name: _tool_check(c, obs),
    LatencyCheck: _latency,
    TokensCheck: _tokens,
    StatusCheck: _status,
    RubricCheck: _ungraded,
}


def check(c: Check, obs: Observation) -> CheckOutcome:
    """Every check but a graded ``rubric`` (which needs a grader: see :func:`score_case`)."""
    return _CHECKS[type(c)](c, obs, describe(c))


async def score_case(case: Case, obs: Observation, grader: Grader | None = None) -> CaseResult:
    checks: list[Check] = list(case.checks)
    if not case.expects_status:
        checks.insert(0, StatusCheck(status="completed"))
    outcomes: list[CheckOutcome] = []
    for c in checks:
        if isinstance(c, RubricCheck) and grader is not None:
            if obs.status != "completed":
                outcomes.append(CheckOutcome("skipped", "rubric", f"run {obs.status}: not graded"))
                continue
            try:
                grade = await grader(c.rubric, case.input, obs.output or "")
            except Exception as exc:  # a grader outage must not crash the whole suite
                outcomes.append(CheckOutcome("failed", "rubric", f"grader error: {exc}"))
                continue
            outcomes.append(CheckOutcome("passed" if grade.passed else "failed", "rubric",
                                         "" if grade.passed else _clip(grade.reason, 200)))
            continue
        outcomes.append(check(c, obs))
    return CaseResult(case.id, obs, outcomes)
