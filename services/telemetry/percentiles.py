"""Percentiles of the latency samples a rollup keeps for one agent-minute.

Linear interpolation between closest ranks (the method numpy calls
``linear``), so p50 of ``[1, 2]`` is 1.5 and one sample is every percentile.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

__all__ = ["QUANTILES", "percentile", "summarise"]

QUANTILES: Mapping[str, float] = {"p50": 0.50, "p95": 0.95, "p99": 0.99}


def percentile(samples: Iterable[float], q: float) -> float | None:
    """The ``q``-quantile (0 ≤ q ≤ 1) of ``samples``; ``None`` when there are none."""
    if not 0.0 <= q <= 1.0 or math.isnan(q):
        raise ValueError(f"quantile must be within [0, 1], got {q}")
    ordered = sorted(s for s in samples if not math.isnan(s))
    if not ordered:
        return None
    rank = q * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarise(samples: Iterable[float]) -> dict[str, float | None]:
    values = list(samples)
    return {name: percentile(values, q) for name, q in QUANTILES.items()}
