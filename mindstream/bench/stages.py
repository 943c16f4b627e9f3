"""Per-stage latency: where the time of a run goes, from its messages' ``ce_time``.

A run's *timeline* maps named points to wall-clock seconds: the client's
submit and receive times, and the production time of each message the run
caused (``RunReady``, the ``run.started`` event, ``ToolCall`` ...). A stage
is the gap between two consecutive points of the run's kind. All processes
run on one machine, so their clocks agree.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from mindstream.bench.capture import Captured
from mindstream.bench.stats import Summary, summarize

__all__ = [
    "ANSWER_POINTS",
    "STAGE_LABELS",
    "TOOL_POINTS",
    "Timeline",
    "stage_breakdown",
    "timelines",
]

Timeline = dict[str, float]

ANSWER_POINTS: tuple[str, ...] = (
    "submitted", "ready", "run.started", "model.completed", "run.completed", "received")
TOOL_POINTS: tuple[str, ...] = (
    "submitted", "ready", "run.started", "model.completed", "tool.call", "tool.result",
    "tool.completed", "model.completed#2", "run.completed", "received")

STAGE_LABELS: Mapping[tuple[str, str], str] = {
    ("submitted", "ready"): "memory: request -> context ready",
    ("ready", "run.started"): "reasoning: ready -> run started",
    ("run.started", "model.completed"): "model call 1 (HTTP, scripted)",
    ("model.completed", "run.completed"): "reasoning: persist + publish final step",
    ("model.completed", "tool.call"): "reasoning: persist + publish tool call",
    ("tool.call", "tool.result"): "tools: call -> result",
    ("tool.result", "tool.completed"): "reasoning: result -> applied",
    ("tool.completed", "model.completed#2"): "model call 2 (HTTP, scripted)",
    ("model.completed#2", "run.completed"): "reasoning: persist + publish final step",
    ("run.completed", "received"): "reply: RunCompleted -> client",
}

_TOPIC_POINTS = {
    "mindstream.runs.ready.v1": "ready",
    "mindstream.tools.calls.v1": "tool.call",
    "mindstream.tools.results.v1": "tool.result",
}
_EVENT_POINTS = {"run.started", "model.completed", "tool.completed", "run.completed"}


def _seconds(ce_time: str) -> float | None:
    try:
        return datetime.fromisoformat(ce_time.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _point_of(record: Captured, prefix: str) -> str | None:
    logical = record.topic.removeprefix(prefix)
    if logical in _TOPIC_POINTS:
        return _TOPIC_POINTS[logical]
    if logical == "mindstream.runs.events.v1":
        try:
            kind = json.loads(record.value).get("kind")
        except (ValueError, AttributeError):
            return None
        return kind if kind in _EVENT_POINTS else None
    return None


def timelines(records: Iterable[Captured], prefix: str,
              client_times: Mapping[str, tuple[float, float]]) -> dict[str, Timeline]:
    """Timelines of the runs in ``client_times`` (run id -> (submitted, received)).

    A point seen twice in one run (the second model call) gets ``#2``; a
    message re-published after a crash repeats its id and is counted once.
    """
    lines: dict[str, Timeline] = {
        run_id: {"submitted": sub, "received": rec} for run_id, (sub, rec) in client_times.items()}
    seen: set[str] = set()
    ordered = sorted(records, key=lambda r: r.ce_time)
    for record in ordered:
        line = lines.get(record.correlation_id)
        if line is None or record.ce_id in seen:
            continue
        point = _point_of(record, prefix)
        at = _seconds(record.ce_time)
        if point is None or at is None:
            continue
        seen.add(record.ce_id)
        name, n = point, 1
        while name in line:
            n += 1
            name = f"{point}#{n}"
        line[name] = at
    return lines


@dataclass(frozen=True)
class Stage:
    start: str
    end: str
    label: str
    ms: Summary

    def as_dict(self) -> dict[str, object]:
        return {"from": self.start, "to": self.end, "label": self.label, "ms": self.ms.as_dict()}


def stage_breakdown(lines: Iterable[Timeline], points: Sequence[str]) -> list[Stage]:
    """Summaries of each consecutive gap of ``points`` over the runs that have both ends."""
    gaps: dict[tuple[str, str], list[float]] = {pair: [] for pair in itertools.pairwise(points)}
    for line in lines:
        for (start, end), values in gaps.items():
            if start in line and end in line:
                values.append(max(0.0, (line[end] - line[start]) * 1000))
    return [
        Stage(start, end, STAGE_LABELS.get((start, end), f"{start} -> {end}"), summarize(values))
        for (start, end), values in gaps.items() if values
    ]
