"""Eval suites: YAML files of cases, the checks each answer must pass, and thresholds.

A suite looks like::

    suite: assistant            # name (default: the file's stem)
    agent: assistant            # default agent; `mindstream eval run --agent` overrides it
    concurrency: 4              # default for --concurrency
    thresholds:                 # every one must hold for the run to pass (exit 0)
      min_pass_rate: 0.9        # default 1.0: every case must pass
      max_p95_latency_ms: 20000
      max_tokens: 50000         # tokens of every case's runs together
    cases:
      - id: arithmetic
        input: "What is 17 * 23?"
        session: ["I am vegetarian."]      # earlier turns, sent first in the same session
        checks:
          - contains: "391"                # or a list; case-insensitive unless ignore_case: false
          - not_contains: "steak"
          - regex: "\\b391\\b"
          - json_schema: {type: object, required: [answer]}
          - tool: calculator               # the run called this tool ...
            arguments: {expression: "17 \\* 23"}   # ... with these values (regex on strings)
          - rubric: "States the product and nothing else."   # model-graded, if a grader is set
          - max_latency_ms: 15000
          - max_tokens: 2000
          - status: completed              # the default expectation; `failed` for refusals
            error_contains: "guardrail"

Every check is a mapping whose first key names its kind; unknown keys are refused
when the suite loads, so a typo never turns into a check that silently passes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "Case",
    "Check",
    "ContainsCheck",
    "JsonSchemaCheck",
    "LatencyCheck",
    "NotContainsCheck",
    "RegexCheck",
    "RubricCheck",
    "StatusCheck",
    "Suite",
    "SuiteError",
    "Thresholds",
    "TokensCheck",
    "ToolCheck",
    "load_suite",
    "parse_suite",
]


class SuiteError(ValueError):
    """The suite file is unreadable or invalid; the message names the place."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"bad regex {value!r}: {exc}") from exc
    return value


class ContainsCheck(_Model):
    kind: Literal["contains"] = "contains"
    contains: list[str] = Field(min_length=1)
    ignore_case: bool = True

    @field_validator("contains", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class NotContainsCheck(_Model):
    kind: Literal["not_contains"] = "not_contains"
    not_contains: list[str] = Field(min_length=1)
    ignore_case: bool = True

    @field_validator("not_contains", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class RegexCheck(_Model):
    kind: Literal["regex"] = "regex"
    regex: str
    ignore_case: bool = False

    @field_validator("regex")
    @classmethod
    def _valid(cls, value: str) -> str:
        return _regex(value)


class JsonSchemaCheck(_Model):
    """The answer (structured output, or the text parsed as JSON) satisfies the schema."""

    kind: Literal["json_schema"] = "json_schema"
    json_schema: dict[str, Any]


class ToolCheck(_Model):
    """The run asked for ``tool`` (``times`` at least), with argument values that match.

    A string expected value is a regex searched in the actual value (as text); any
    other value must be equal. ``called: false`` asserts the tool was *not* called.
    """

    kind: Literal["tool"] = "tool"
    tool: str = Field(min_length=1)
    arguments: dict[str, Any] = Field(default_factory=dict)
    called: bool = True
    times: int = Field(default=1, ge=1)

    @field_validator("arguments")
    @classmethod
    def _regexes(cls, arguments: dict[str, Any]) -> dict[str, Any]:
        for value in arguments.values():
            if isinstance(value, str):
                _regex(value)
        return arguments


class RubricCheck(_Model):
    """Graded by a model when one is configured; skipped (with a note) otherwise."""

    kind: Literal["rubric"] = "rubric"
    rubric: str = Field(min_length=1)


class LatencyCheck(_Model):
    kind: Literal["max_latency_ms"] = "max_latency_ms"
    max_latency_ms: float = Field(gt=0)


class TokensCheck(_Model):
    kind: Literal["max_tokens"] = "max_tokens"
    max_tokens: int = Field(gt=0)


class StatusCheck(_Model):
    """The run ended this way (and, optionally, its error says this)."""

    kind: Literal["status"] = "status"
    status: Literal["completed", "failed", "cancelled"]
    error_contains: str | None = None


Check = Annotated[
    ContainsCheck | NotContainsCheck | RegexCheck | JsonSchemaCheck | ToolCheck | RubricCheck
    | LatencyCheck | TokensCheck | StatusCheck,
    Field(discriminator="kind"),
]
_KINDS = ("contains", "not_contains", "regex", "json_schema", "tool", "rubric",
          "max_latency_ms", "max_tokens", "status")


class Case(_Model):
    id: str = Field(pattern=r"^[A-Za-z0-9._:-]{1,100}$")
    input: str = Field(min_length=1)
    session: list[str] = Field(default_factory=list, max_length=50)
    checks: list[Check] = Field(default_factory=list)
    agent: str | None = None  # a case may name its own agent (rare: most suites test one)

    @field_validator("checks", mode="before")
    @classmethod
    def _tag(cls, checks: Any) -> Any:
        if not isinstance(checks, list):
            return checks
        tagged = []
        for i, raw in enumerate(checks):
            if isinstance(raw, dict) and "kind" not in raw:
                kinds = [k for k in _KINDS if k in raw]
                if len(kinds) != 1:
                    raise ValueError(
                        f"check #{i + 1} must have exactly one of {', '.join(_KINDS)} "
                        f"(has {', '.join(map(str, raw)) or 'nothing'})")
                tagged.append({"kind": kinds[0], **raw})
            else:
                tagged.append(raw)
        return tagged

    @property
    def expects_status(self) -> bool:
        return any(isinstance(c, StatusCheck) for c in self.checks)


class Thresholds(_Model):
    min_pass_rate: float = Field(default=1.0, ge=0.0, le=1.0)
    max_p95_latency_ms: float | None = Field(default=None, gt=0)
    max_tokens: int | None = Field(default=None, gt=0, description="all runs together")


class Suite(_Model):
    suite: str = Field(pattern=r"^[A-Za-z0-9._:-]{1,100}$")
    agent: str | None = None
    description: str = ""
    concurrency: int = Field(default=4, ge=1, le=64)
    timeout_s: float = Field(default=120.0, gt=0, description="per run")
    settle_ms: int = Field(
        default=500, ge=0, le=60_000,
        description="pause after session setup turns, so memory has recorded them",
    )
    thresholds: Thresholds = Field(default_factory=Thresholds)
    cases: list[Case] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> Suite:
        seen: set[str] = set()
        for case in self.cases:
            if case.id in seen:
                raise ValueError(f"duplicate case id {case.id!r}")
            seen.add(case.id)
        return self


def _where(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err.get("loc", ()) if not str(p).endswith("Check"))
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{loc or '(suite)'}: {err.get('msg')}{more}"


def parse_suite(doc: Any, *, name: str = "suite") -> Suite:
    """A suite from a parsed YAML document; ``name`` is used when the document has none."""
    if not isinstance(doc, dict):
        raise SuiteError("a suite is a mapping with a 'cases' list")
    try:
        return Suite.model_validate({"suite": name, **doc})
    except ValidationError as exc:
        raise SuiteError(_where(exc)) from exc


def load_suite(path: str | Path) -> Suite:
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise SuiteError(f"{path}: cannot read: {exc}") from exc
    except yaml.YAMLError as exc:
        raise SuiteError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from exc
    try:
        return parse_suite(doc, name=path.stem)
    except SuiteError as exc:
        raise SuiteError(f"{path}: {exc}") from exc
