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
    "submitted", "ready", "run.started", "model.sent", "model.returned", "model.completed",
    "run.completed", "received")
TOOL_POINTS: tuple[str, ...] = (
    "submitted", "ready", "run.started", "model.sent", "model.returned", "model.completed",
    "tool.call", "tool.result", "tool.completed", "model.sent#2", "model.returned#2",
    "model.completed#2", "run.completed", "received")

STAGE_LABELS: Mapping[tuple[str, str], str] = {
    ("submitted", "ready"): "client -> memory: context assembled, RunReady out",
    ("ready", "run.started"): "reasoning: RunReady in, run created, run.started out",
    ("run.started", "model.sent"): "reasoning: start step done, model call claimed",
    ("model.sent", "model.returned"): "model call (HTTP stream, scripted) + delta flush",
    ("model.returned", "model.completed"): "reasoning: model step persisted, publishing",
    ("model.completed", "run.completed"): "reasoning: publish final step",
    ("model.completed", "tool.call"): "reasoning: publish tool call",
    ("tool.call", "tool.result"): "tools: call in, no-op run, result out",
    ("tool.result", "tool.completed"): "reasoning: result in, applied, event out",
    ("tool.completed", "model.sent#2"): "reasoning: step done, model call claimed",
    ("model.sent#2", "model.returned#2"): "model call 2 (HTTP stream, scripted) + delta flush",
    ("model.returned#2", "model.completed#2"): "reasoning: model step persisted, publishing",
    ("model.completed#2", "run.completed"): "reasoning: publish final step",
    ("run.completed", "received"): "RunCompleted -> client (reply topic)",
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


def _points_of(record: Captured, prefix: str) -> list[tuple[str, float]]:
    """The named points a record marks: its own production time, and for a
    ``model.completed`` event also when the model call was sent and returned
    (the event's ``at`` is taken when the call returned; ``data.latency_ms``
    is the call's duration as the reasoning service measured it)."""
    at = _seconds(record.ce_time)
    if at is None:
        return []
    logical = record.topic.removeprefix(prefix)
    if logical in _TOPIC_POINTS:
        return [(_TOPIC_POINTS[logical], at)]
    if logical != "mindstream.runs.events.v1":
        return []
    try:
        body = json.loads(record.value)
        kind = body.get("kind")
    except (ValueError, AttributeError):
        return []
    if kind not in _EVENT_POINTS:
        return []
    found = [(str(kind), at)]
    if kind == "model.completed":
        returned = _seconds(str(body.get("at", "")))
        latency = (body.get("data") or {}).get("latency_ms")
        if returned is not None and isinstance(latency, int | float):
            found = [("model.sent", returned - latency / 1000), ("model.returned", returned), *found]
    return found


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
        seen.add(record.ce_id)
        for point, at in _points_of(record, prefix):
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
