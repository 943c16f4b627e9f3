"""Percentiles agree with the linear (closest-ranks) definition; summaries handle edge cases."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mindstream.bench.stats import percentile, ratio, summarize

pytestmark = pytest.mark.unit


def test_percentile_interpolates_between_closest_ranks() -> None:
    values = [10.0, 20.0, 30.0, 40.0]
    assert percentile(values, 0) == 10.0
    assert percentile(values, 100) == 40.0
    assert percentile(values, 50) == 25.0
    assert percentile(values, 99) == pytest.approx(39.7)


def test_percentile_of_one_value_is_that_value() -> None:
    assert percentile([7.5], 99) == 7.5


@pytest.mark.parametrize("q", [-1, 100.5, math.nan])
def test_percentile_refuses_out_of_range(q: float) -> None:
    with pytest.raises(ValueError, match="percentile"):
        percentile([1.0, 2.0], q)


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)


def test_summary_of_unsorted_values() -> None:
    s = summarize([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (s.count, s.min, s.max, s.mean, s.p50) == (5, 1.0, 5.0, 3.0, 3.0)
    assert s.p99 == pytest.approx(4.96)


def test_summary_of_nothing_has_nan_figures() -> None:
    s = summarize([])
    assert s.count == 0 and math.isnan(s.p50) and math.isnan(s.p99)


def test_summary_refuses_nan_samples() -> None:
    with pytest.raises(ValueError, match="NaN"):
        summarize([1.0, math.nan])


def test_summary_dict_rounds() -> None:
    assert summarize([1.23456]).as_dict()["p50"] == 1.235


def test_ratio_against_a_missing_floor_is_nan() -> None:
    assert ratio(30.0, 10.0) == 3.0
    assert math.isnan(ratio(30.0, 0.0))
    assert math.isnan(ratio(math.nan, 10.0))


@given(st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1, max_size=200))
def test_percentiles_are_ordered_and_bounded(values: list[float]) -> None:
    s = summarize(values)
    assert s.min <= s.p50 <= s.p90 <= s.p95 <= s.p99 <= s.max
    assert s.min <= s.mean <= s.max or math.isclose(s.mean, s.min) or math.isclose(s.mean, s.max)
