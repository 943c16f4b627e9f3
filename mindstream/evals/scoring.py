"""A suite's verdict: its figures against its thresholds."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from mindstream.evals.checks import CaseResult
from mindstream.evals.suite import Thresholds

__all__ = ["ThresholdResult", "Verdict", "percentile", "summarise"]


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100); ``None`` for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class ThresholdResult:
    name: str
    ok: bool
    detail: str


@dataclass
class Verdict:
    cases: int
    passed: int
    pass_rate: float
    p95_latency_ms: float | None
    tokens: int
    thresholds: list[ThresholdResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.thresholds)

    @property
    def failures(self) -> list[str]:
        return [f"{t.name}: {t.detail}" for t in self.thresholds if not t.ok]


def summarise(results: list[CaseResult], thresholds: Thresholds) -> Verdict:
    passed = sum(1 for r in results if r.passed)
    rate = passed / len(results) if results else 0.0
    p95 = percentile([r.observation.latency_ms for r in results
                      if r.observation.status not in ("timeout", "setup_failed")], 95)
    tokens = sum(r.observation.tokens for r in results)
    verdict = Verdict(len(results), passed, rate, p95, tokens)
    verdict.thresholds.append(ThresholdResult(
        "min_pass_rate", rate >= thresholds.min_pass_rate,
        f"{rate:.0%} passed ({passed}/{len(results)}), need {thresholds.min_pass_rate:.0%}"))
    if thresholds.max_p95_latency_ms is not None:
        ok = p95 is not None and p95 <= thresholds.max_p95_latency_ms
        shown = "no finished run" if p95 is None else f"{p95:.0f} ms"
        verdict.thresholds.append(ThresholdResult(
            "max_p95_latency_ms", ok,
            f"p95 {shown}, limit {thresholds.max_p95_latency_ms:.0f} ms"))
    if thresholds.max_tokens is not None:
        verdict.thresholds.append(ThresholdResult(
            "max_tokens", tokens <= thresholds.max_tokens,
            f"{tokens} tokens, limit {thresholds.max_tokens}"))
    return verdict
