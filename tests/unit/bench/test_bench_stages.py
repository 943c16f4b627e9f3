"""Stage timelines are built from messages' ce_time, per run, without double counting."""

from __future__ import annotations

import json

import pytest

from mindstream.bench.capture import Captured
from mindstream.bench.stages import ANSWER_POINTS, TOOL_POINTS, stage_breakdown, timelines

pytestmark = pytest.mark.unit

P = "bench1."
T0 = 1_700_000_000.0


def iso(seconds: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def rec(topic: str, run: str, at: float, ce_id: str, kind: str | None = None,
        model: tuple[float, float] | None = None) -> Captured:
    """``model``: (when the call returned, its latency in ms), for model.completed."""
    doc: dict[str, object] = {"kind": kind} if kind else {}
    if model is not None:
        doc |= {"at": iso(model[0]), "data": {"latency_ms": model[1]}}
    return Captured(P + topic, "s", ce_id, "t", run, iso(at), json.dumps(doc).encode())


def answer_records(run: str, t: float) -> list[Captured]:
    return [
        rec("mindstream.runs.requested.v1", run, t + 0.001, f"{run}-q"),
        rec("mindstream.runs.ready.v1", run, t + 0.010, f"{run}-r"),
        rec("mindstream.runs.events.v1", run, t + 0.020, f"{run}-e1", "run.started"),
        rec("mindstream.runs.events.v1", run, t + 0.025, f"{run}-e1a", "model.delta"),
        rec("mindstream.runs.events.v1", run, t + 0.030, f"{run}-e2", "model.completed",
            model=(t + 0.028, 6.0)),
        rec("mindstream.runs.events.v1", run, t + 0.032, f"{run}-e3", "run.completed"),
        rec("mindstream.audit.v1", run, t + 0.033, f"{run}-a"),
    ]


def test_answer_timeline_and_stages() -> None:
    records = answer_records("r1", T0)
    lines = timelines(records, P, {"r1": (T0, T0 + 0.040)})
    line = lines["r1"]
    assert list(line) == ["submitted", "received", "ready", "run.started", "model.sent",
                          "model.returned", "model.completed", "run.completed"]
    stages = {(s.start, s.end): s.ms.p50 for s in stage_breakdown(lines.values(), ANSWER_POINTS)}
    assert stages[("submitted", "ready")] == pytest.approx(10.0, abs=0.01)
    assert stages[("run.started", "model.sent")] == pytest.approx(2.0, abs=0.01)
    assert stages[("model.sent", "model.returned")] == pytest.approx(6.0, abs=0.01)
    assert stages[("model.returned", "model.completed")] == pytest.approx(2.0, abs=0.01)
    assert stages[("run.completed", "received")] == pytest.approx(8.0, abs=0.01)
    assert sum(stages.values()) == pytest.approx(40.0, abs=0.05)


def test_second_model_call_is_numbered_and_redelivery_counted_once() -> None:
    run = "r2"
    records = [
        rec("mindstream.runs.ready.v1", run, T0 + 0.01, "a"),
        rec("mindstream.runs.events.v1", run, T0 + 0.02, "b", "run.started"),
        rec("mindstream.runs.events.v1", run, T0 + 0.03, "c", "model.completed",
            model=(T0 + 0.025, 2.5)),
        rec("mindstream.tools.calls.v1", run, T0 + 0.04, "d"),
        rec("mindstream.tools.results.v1", run, T0 + 0.05, "e"),
        rec("mindstream.tools.results.v1", run, T0 + 0.05, "e"),  # a redelivered copy
        rec("mindstream.runs.events.v1", run, T0 + 0.06, "f", "tool.completed"),
        rec("mindstream.runs.events.v1", run, T0 + 0.07, "g", "model.completed",
            model=(T0 + 0.065, 2.5)),
        rec("mindstream.runs.events.v1", run, T0 + 0.08, "h", "run.completed"),
    ]
    line = timelines(records, P, {run: (T0, T0 + 0.09)})[run]
    assert set(TOOL_POINTS) <= set(line)
    stages = {(s.start, s.end): s.ms.p50 for s in stage_breakdown([line], TOOL_POINTS)}
    assert len(stages) == len(TOOL_POINTS) - 1
    assert stages[("model.sent#2", "model.returned#2")] == pytest.approx(2.5, abs=0.01)
    assert stages[("tool.call", "tool.result")] == pytest.approx(10.0, abs=0.01)
    assert sum(stages.values()) == pytest.approx(90.0, abs=0.05)


def test_runs_not_asked_for_and_bad_times_are_ignored() -> None:
    records = [
        *answer_records("other", T0),
        Captured(P + "mindstream.runs.ready.v1", "s", "x", "t", "r3", "not a time", b""),
        Captured(P + "mindstream.runs.events.v1", "s", "y", "t", "r3", iso(T0), b"not json"),
    ]
    lines = timelines(records, P, {"r3": (T0, T0 + 1)})
    assert set(lines) == {"r3"}
    assert set(lines["r3"]) == {"submitted", "received"}


def test_breakdown_skips_gaps_no_run_has() -> None:
    stages = stage_breakdown([{"submitted": T0, "received": T0 + 1}], ANSWER_POINTS)
    assert stages == []


def test_negative_gaps_clamp_to_zero() -> None:
    """Two processes' ce_time may tie or cross by microseconds; a gap is never negative."""
    line = {"submitted": T0, "ready": T0 - 0.001}
    (stage,) = stage_breakdown([line], ("submitted", "ready"))
    assert stage.ms.p50 == 0.0
