"""The sustained rate, the targets, the table and the results files, from a plain report."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from mindstream.bench.report import (
    SECTIONS,
    clean,
    format_table,
    is_sustained,
    sustained_rate,
    targets,
    write_results,
)

pytestmark = pytest.mark.unit


def step(rate: float, p99: float, *, done: float | None = None, completed: int | None = None,
         submitted: int = 100, timeouts: int = 0) -> dict[str, Any]:
    return {"offered_rate": rate, "submitted": submitted,
            "completed": submitted if completed is None else completed,
            "timeouts": timeouts, "achieved_rate": rate if done is None else done,
            "latency_ms": {"p50": p99 / 3, "p95": p99 / 2, "p99": p99}}


def test_sustained_needs_bound_all_answers_and_keeping_up() -> None:
    assert is_sustained(step(100, 240), 250)
    assert not is_sustained(step(100, 260), 250)
    assert not is_sustained(step(100, 100, completed=99), 250)
    assert not is_sustained(step(100, 100, done=80), 250)
    assert not is_sustained(step(100, math.nan), 250)
    assert not is_sustained(step(100, 10, submitted=0, completed=0), 250)


def test_sustained_rate_is_the_highest_good_step() -> None:
    steps = [step(50, 40), step(100, 90), step(200, 400), step(150, 200)]
    assert sustained_rate(steps, 250) == 150
    assert sustained_rate([step(50, 900)], 250) == 0.0


def report() -> dict[str, Any]:
    return {
        "machine": {"cores": 2, "ram_mib": 2048, "cpu_model": "Test CPU", "kafka": "4.1.1",
                    "python": "3.11"},
        "settings": {"bound_ms": 250.0},
        "floor": {},
        "latency": {
            "answer": {"e2e_ms": {"p50": 20.0, "p95": 30.0, "p99": 45.0},
                       "overhead_vs_floor": {"floor_p50_ms": 8.0, "p50_x": 2.5},
                       "cpu_ms_per_run": {"reasoning-1": 3.0, "mongo-server": 5.0,
                                          "bench-client": 9.0, "total": 8.0}},
            "tool": {"e2e_ms": {"p50": 40.0, "p95": 60.0, "p99": 90.0},
                     "overhead_vs_floor": {"floor_p50_ms": 10.0, "p50_x": 4.0}},
        },
        "throughput": {"replicas": 1, "partitions": 12, "bound_ms": 250.0,
                       "steps": [step(100, 50), step(200, 300)], "sustained_runs_per_s": 100.0,
                       "completeness": {"submitted": 400, "lost": 0, "conflicting": 0}},
        "scaling": {"replicas": 2, "partitions": 24, "bound_ms": 250.0,
                    "steps": [step(100, 40), step(200, 200)], "sustained_runs_per_s": 200.0,
                    "completeness": {"submitted": 400, "lost": 0, "conflicting": 0}},
        "memory": {"idle_mib": {"reasoning-1": 80.0}, "under_load_max_mib": {"reasoning-1": 95.5}},
    }


def test_table_warns_when_the_machine_was_busy() -> None:
    r = report()
    assert "WARNING" not in format_table(r)
    r["latency"]["answer"]["background_cores"] = 1.3
    assert "other work on this machine used 1.30 cores" in format_table(r)


def test_targets_say_what_was_met() -> None:
    met = {t["name"]: t["met"] for t in targets(report())}
    assert met == {"single-answer p50 vs floor": True, "single-answer p99 at low load": True,
                   "sustained runs/s with p99 < 250 ms": False}


def test_targets_of_a_missing_section_are_not_met() -> None:
    assert not any(t["met"] for t in targets({}))


def test_table_names_every_figure() -> None:
    r = report()
    r["targets"] = targets(r)
    table = format_table(r)
    for text in ("2 cores", "answer run", "tool run", "2.5x", "CPU per answer run, beyond idle: 8.0 ms",
                 "~250 runs/s", "mongo-server 5.0, reasoning-1 3.0", "throughput (1 replica",
                 "scaling (2 replica", "sustained: 100 runs/s", "reasoning-1", "95.5", "[MISSED]",
                 "[met]"):
        assert text in table, text


def test_cpu_capacity_needs_a_cost() -> None:
    from mindstream.bench.report import cpu_capacity

    assert cpu_capacity(report()) == 250.0
    assert math.isnan(cpu_capacity({}))


def test_clean_makes_strict_json() -> None:
    cleaned = clean({"a": math.nan, "b": (1.0, math.inf), "c": Path("x"), "d": {"e": 2}})
    assert cleaned == {"a": None, "b": [1.0, None], "c": "x", "d": {"e": 2}}
    json.dumps(cleaned, allow_nan=False)


def test_write_results_writes_json_and_png(tmp_path: Path) -> None:
    r = report()
    r["targets"] = targets(r)
    r["latency"]["answer"]["e2e_ms"]["p999"] = math.nan
    json_path, png_path = write_results(r, tmp_path / "out", "20260101T000000Z")
    loaded = json.loads(json_path.read_text())
    assert set(SECTIONS) <= set(loaded)
    assert loaded["latency"]["answer"]["e2e_ms"]["p999"] is None
    assert png_path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
