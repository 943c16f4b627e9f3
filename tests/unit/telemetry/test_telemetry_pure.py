"""Reason classes, prices, percentiles and label bounds: the pure parts of telemetry."""

from __future__ import annotations

import math

import pytest

from schemas.common import Usage
from schemas.runs import RunStatus
from services.telemetry.classify import ReasonClass, classify_reason
from services.telemetry.handlers import LruMap, number
from services.telemetry.labels import BoundedLabel, agent_label
from services.telemetry.percentiles import percentile, summarise
from services.telemetry.pricing import ModelPrice, PriceTable

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("limit: max_model_calls=8 reached", ReasonClass.LIMIT),
        ("limit: max_tool_calls=4 exceeded (6 requested)", ReasonClass.LIMIT),
        ("limit: token_budget=1000 reached (1200 used)", ReasonClass.LIMIT),
        ("limit: deadline 2026-01-01T00:00:00+00:00 passed while awaiting_tools", ReasonClass.DEADLINE),
        ("model endpoint http://m/v1 unavailable after 3 attempt(s): connect refused",
         ReasonClass.MODEL_UNAVAILABLE),
        ("model circuit open, retry in 12.0s", ReasonClass.MODEL_UNAVAILABLE),
        ("model endpoint http://m/v1 rejected the request (400): bad", ReasonClass.MODEL_UNAVAILABLE),
        ("rate limit from provider", ReasonClass.MODEL_UNAVAILABLE),
        ("guardrail: prompt injection detected", ReasonClass.GUARDRAIL),
        ("input blocked: PII", ReasonClass.GUARDRAIL),
        ("tool 'http_fetch' not allowed for agent", ReasonClass.TOOL),
        ("tool call rejected by operator", ReasonClass.TOOL),
        ("model output does not match the schema: $.x missing", ReasonClass.INVALID),
        ("invalid agent definition", ReasonClass.INVALID),
        ("timed out", ReasonClass.DEADLINE),
        ("something odd happened", ReasonClass.OTHER),
        ("", ReasonClass.OTHER),
        (None, ReasonClass.OTHER),
    ],
)
def test_failure_reasons_fall_into_bounded_classes(reason: str | None, expected: ReasonClass) -> None:
    assert classify_reason(reason, RunStatus.FAILED) is expected


def test_status_decides_before_the_words() -> None:
    assert classify_reason("limit: anything", RunStatus.COMPLETED) is ReasonClass.NONE
    assert classify_reason("tool broke", RunStatus.CANCELLED) is ReasonClass.CANCELLED
    assert classify_reason("cancelled by operator", "failed") is ReasonClass.CANCELLED
    with pytest.raises(ValueError, match="not a valid"):
        classify_reason("x", "exploded")


def test_price_of_usage_per_thousand_tokens() -> None:
    table = PriceTable({"gpt-4o-mini": ModelPrice(prompt_per_1k=0.15, completion_per_1k=0.6)})
    usage = Usage(prompt_tokens=2000, completion_tokens=500)
    assert table.cost("gpt-4o-mini", usage) == pytest.approx(0.3 + 0.3)
    assert table.cost("openai/gpt-4o-mini", usage) == pytest.approx(0.6)
    assert table.cost("unknown", usage) is None
    assert table.cost(None, usage) is None
    assert table.models == frozenset({"gpt-4o-mini"})


def test_fallback_price_covers_unlisted_models() -> None:
    table = PriceTable({"*": ModelPrice(prompt_per_1k=1.0, completion_per_1k=2.0),
                        "cheap": ModelPrice(prompt_per_1k=0.0, completion_per_1k=0.0)})
    usage = Usage(prompt_tokens=1000, completion_tokens=1000)
    assert table.cost("other-model", usage) == pytest.approx(3.0)
    assert table.cost(None, usage) == pytest.approx(3.0)
    assert table.cost("cheap", usage) == 0.0
    assert table.models == frozenset({"cheap"})


def test_negative_prices_are_refused() -> None:
    with pytest.raises(ValueError, match="greater than or equal"):
        ModelPrice(prompt_per_1k=-1, completion_per_1k=0)


def test_percentiles_interpolate_between_ranks() -> None:
    assert percentile([], 0.5) is None
    assert percentile([7.0], 0.99) == 7.0
    assert percentile([1.0, 2.0], 0.5) == 1.5
    samples = [float(i) for i in range(1, 101)]
    assert percentile(samples, 0.5) == pytest.approx(50.5)
    assert percentile(samples, 0.95) == pytest.approx(95.05)
    assert percentile(samples, 0.99) == pytest.approx(99.01)
    assert percentile(reversed(samples), 1.0) == 100.0
    assert percentile([3.0, math.nan, 1.0], 0.0) == 1.0
    assert summarise([10.0, 20.0, 30.0]) == {"p50": 20.0, "p95": pytest.approx(29.0),
                                             "p99": pytest.approx(29.8)}
    with pytest.raises(ValueError, match="quantile"):
        percentile([1.0], 1.5)


def test_label_admits_first_n_then_other() -> None:
    label = BoundedLabel(2)
    assert [label.value(v) for v in ("a", "b", "c", "a", "b")] == ["a", "b", "other", "a", "b"]
    assert label.admitted == frozenset({"a", "b"})


def test_label_allowlist_wins_over_first_seen() -> None:
    label = BoundedLabel(100, ["calculator", "clock"])
    assert label.value("calculator") == "calculator"
    assert label.value("http_fetch") == "other"
    assert label.admitted == frozenset({"calculator", "clock"})


@pytest.mark.parametrize(
    "raw",
    ["", None, "6f1c2a8e-3b5d-5c47-9e0a-6d2b7f4c9a13", "run-0123456789abcdef0123", "has space",
     "x" * 65, "other"],
)
def test_ids_and_junk_never_become_labels(raw: str | None) -> None:
    label = BoundedLabel(1000)
    assert label.value(raw) == "other"
    assert label.admitted == frozenset()


def test_agent_label_drops_the_pinned_version() -> None:
    assert agent_label("support@3") == "support"
    assert agent_label("support") == "support"
    with pytest.raises(ValueError, match="at least 1"):
        BoundedLabel(0)


def test_lru_map_forgets_least_recently_used() -> None:
    lru: LruMap[str, int] = LruMap(2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.get("a") == 1
    lru.put("c", 3)
    assert lru.get("b") is None
    assert (lru.get("a"), lru.get("c"), len(lru)) == (1, 3, 2)
    assert lru.pop("a") == 1
    assert lru.pop("a") is None


def test_number_reads_only_finite_non_negative_numbers() -> None:
    data: dict[str, object] = {"bool": True, "neg": -1, "nan": math.nan, "text": "12", "ok": 12,
                               "f": 1.5}
    assert number(data, "bool", "neg", "nan", "text", "missing") is None
    assert number(data, "bool", "ok") == 12.0
    assert number(data, "f") == 1.5
