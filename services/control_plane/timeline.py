"""A run's timeline from its events: each model call, tool call and wait, with durations.

Events carry times, not spans, so spans are inferred: a model call runs from
the previous non-streaming event to its ``model.completed``; a tool call
from ``tool.requested`` to the ``tool.completed`` with the same call id; an
approval wait from ``run.awaiting_approval`` to ``run.resumed``. A step
still open has no end and no duration.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

__all__ = ["timeline"]


def _ms(start: datetime, end: datetime) -> int:
    return max(0, round((end - start).total_seconds() * 1000))


def timeline(events: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Steps in start order; ``events`` are run-event documents (``at`` a datetime)."""
    steps: list[dict[str, Any]] = []
    open_tools: dict[str, dict[str, Any]] = {}
    open_wait: dict[str, Any] | None = None
    last_boundary: datetime | None = None
    model_calls = 0
    for event in sorted(events, key=lambda e: int(e["seq"])):
        kind, at = event["kind"], event["at"]
        if kind == "model.delta":
            continue
        if kind == "model.completed":
            model_calls += 1
            start = last_boundary or at
            usage = event.get("usage") or {}
            steps.append({"type": "model", "name": f"model call {model_calls}",
                          "started_at": start, "ended_at": at, "duration_ms": _ms(start, at),
                          "ok": True, "tokens": sum(int(v or 0) for v in usage.values())})
        elif kind == "tool.requested":
            step = {"type": "tool", "name": event.get("tool"), "call_id": event.get("call_id"),
                    "started_at": at, "ended_at": None, "duration_ms": None, "ok": None}
            open_tools[str(event.get("call_id"))] = step
            steps.append(step)
        elif kind == "tool.completed":
            done = open_tools.pop(str(event.get("call_id")), None)
            if done is not None:
                done.update(ended_at=at, duration_ms=_ms(done["started_at"], at),
                            ok=bool((event.get("data") or {}).get("ok", True)))
        elif kind == "run.awaiting_approval":
            open_wait = {"type": "approval", "name": f"approval of {event.get('tool')}",
                         "call_id": event.get("call_id"), "started_at": at, "ended_at": None,
                         "duration_ms": None, "ok": None}
            steps.append(open_wait)
        elif kind == "run.resumed" and open_wait is not None:
            open_wait.update(ended_at=at, duration_ms=_ms(open_wait["started_at"], at), ok=True)
            open_wait = None
        last_boundary = at
    return steps
