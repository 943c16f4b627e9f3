"""Failure reasons, folded into a bounded set of classes for a metric label.

A run's ``reason`` (RunEvent) or ``error`` (RunCompleted) is free text written
by whichever service ended the run. As a label it would be unbounded, so it
is matched against keyword rules, in order, first match wins. The rules
follow the words the reasoning service uses (``limit exceeded``,
``deadline``, ``circuit open``/``model unavailable``, ``guardrail``,
``tool``, ``cancelled``, ``invalid``); anything else is ``other``. A
completed run has class ``none``.
"""

from __future__ import annotations

import re
from enum import StrEnum

from schemas.runs import RunStatus

__all__ = ["ReasonClass", "classify_reason"]


class ReasonClass(StrEnum):
    NONE = "none"
    LIMIT = "limit"
    DEADLINE = "deadline"
    MODEL_UNAVAILABLE = "model_unavailable"
    GUARDRAIL = "guardrail"
    TOOL = "tool"
    CANCELLED = "cancelled"
    INVALID = "invalid"
    OTHER = "other"


# Order matters, first match wins: "max tool calls exceeded" is a limit, not a tool
# failure; "tool http_fetch unavailable (circuit open)" is a tool failure, not the model;
# "model call timed out" is the model, a bare "timed out" is a deadline.
_MODEL = r"\b(model|llm|completion)s?\b"
_RULES: tuple[tuple[ReasonClass, re.Pattern[str]], ...] = (
    (ReasonClass.CANCELLED, re.compile(r"\bcancel")),
    (ReasonClass.GUARDRAIL, re.compile(
        r"guardrail|prompt[ _-]?injection|\bpii\b|blocked|unsafe|moderation")),
    (ReasonClass.DEADLINE, re.compile(r"deadline|expired")),
    (ReasonClass.LIMIT, re.compile(
        r"(?<!rate )(?<!rate_)(?<!rate-)\blimits?\b|max[ _-]?(turns|steps|tokens|iterations"
        r"|model[ _-]?calls|tool[ _-]?calls|depth)|budget|exceeded|too many|quota")),
    (ReasonClass.INVALID, re.compile(r"does not match the schema|structured output")),
    (ReasonClass.MODEL_UNAVAILABLE, re.compile(
        _MODEL + r".*(unavailable|error|fail|timeout|timed out|refused|rejected|unreachable)"
        r"|rate[ _-]?limit|overloaded")),
    (ReasonClass.TOOL, re.compile(r"\btools?\b|not[ _-]?allowed|approval|rejected")),
    (ReasonClass.MODEL_UNAVAILABLE, re.compile(r"circuit|breaker|unavailable|\b5\d\d\b")),
    (ReasonClass.DEADLINE, re.compile(r"timed? ?out|timeout")),
    (ReasonClass.INVALID, re.compile(
        r"invalid|validation|schema|malformed|unknown agent|not found|bad request")),
)  # fmt: skip


def classify_reason(reason: str | None, status: RunStatus | str = RunStatus.FAILED) -> ReasonClass:
    """The class of a run's end: ``none`` for a completed run, else by the reason's words.

    A cancelled run is ``cancelled`` whatever its reason says; a failure
    with no reason at all is ``other``.
    """
    status = RunStatus(status)
    if status is RunStatus.COMPLETED:
        return ReasonClass.NONE
    if status is RunStatus.CANCELLED:
        return ReasonClass.CANCELLED
    text = (reason or "").lower()
    for cls, pattern in _RULES:
        if pattern.search(text):
            return cls
    return ReasonClass.OTHER
