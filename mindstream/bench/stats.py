"""Percentiles and summaries, exact and dependency-free.

Percentiles interpolate linearly between closest ranks (the method NumPy
calls ``linear`` and spreadsheets call PERCENTILE.INC), so figures here agree
with what a reader recomputes from the raw samples in the JSON.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

__all__ = ["Summary", "percentile", "ratio", "summarize"]


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of already sorted values."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100 or math.isnan(q):
        raise ValueError(f"percentile must be within 0..100, got {q}")
    rank = (len(sorted_values) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


@dataclass(frozen=True)
class Summary:
    count: int
    mean: float
    min: float
    p50: float
    p90: float
    p95: float
    p99: float
    max: float

    def as_dict(self) -> dict[str, float]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


_EMPTY = Summary(0, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan)


def summarize(values: Iterable[float]) -> Summary:
    """Count, mean, min, p50/p90/p95/p99 and max; NaN figures when there are none."""
    ordered = sorted(values)
    if not ordered:
        return _EMPTY
    if any(math.isnan(v) for v in ordered):
        raise ValueError("cannot summarize NaN samples")
    return Summary(
        count=len(ordered),
        mean=math.fsum(ordered) / len(ordered),
        min=ordered[0],
        p50=percentile(ordered, 50),
        p90=percentile(ordered, 90),
        p95=percentile(ordered, 95),
        p99=percentile(ordered, 99),
        max=ordered[-1],
    )


def ratio(value: float, floor: float) -> float:
    """``value / floor``, NaN when the floor is not positive (nothing to compare with)."""
    if not floor > 0 or math.isnan(value):
        return math.nan
    return value / floor
