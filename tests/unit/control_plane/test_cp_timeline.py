"""The timeline infers model and tool spans from a run's events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.control_plane.timeline import timeline

pytestmark = pytest.mark.unit

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def ev(seq: int, kind: str, ms: int, **extra: Any) -> dict[str, Any]:
    return {"seq": seq, "kind": kind, "at": T0 + timedelta(milliseconds=ms), **extra}


def test_model_and_tool_calls_with_durations() -> None:
    steps = timeline([
        ev(0, "run.started", 0),
        ev(1, "model.delta", 50, text="x"),
        ev(2, "model.completed", 120, usage={"prompt_tokens": 10, "completion_tokens": 5}),
        ev(3, "tool.requested", 130, tool="calculator", call_id="c1"),
        ev(4, "tool.completed", 180, tool="calculator", call_id="c1", data={"ok": False}),
        ev(5, "model.completed", 400),
        ev(6, "run.completed", 410),
    ])
    assert [(s["type"], s["duration_ms"]) for s in steps] == [
        ("model", 120), ("tool", 50), ("model", 220)]
    assert steps[0]["tokens"] == 15
    assert steps[1]["ok"] is False


def test_open_tool_call_has_no_duration_and_events_are_ordered_by_seq() -> None:
    steps = timeline([ev(1, "tool.requested", 10, tool="t", call_id="c"), ev(0, "run.started", 0)])
    assert steps == [{"type": "tool", "name": "t", "call_id": "c", "started_at": steps[0][
        "started_at"], "ended_at": None, "duration_ms": None, "ok": None}]


def test_approval_wait_spans_until_resumed() -> None:
    steps = timeline([
        ev(0, "run.started", 0),
        ev(1, "run.awaiting_approval", 10, tool="pay", call_id="c"),
        ev(2, "run.resumed", 1010),
    ])
    assert steps[0]["type"] == "approval"
    assert steps[0]["duration_ms"] == 1000
