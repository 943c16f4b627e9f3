"""A workflow run as a graph to draw: one node per step with its state, and the edges between.

Edges follow the definition: ``next``, a condition's ``then``/``otherwise``,
a router's ``route`` (labelled with the answer) and ``default``. A parallel
step opens its ``branch``es and a loop its ``body``; where such a step goes
on (its ``next``), the edge is drawn from where its branches or body end
(``join`` for a parallel step, ``exit`` for a loop) rather than from the
step itself, so a layered drawing reads left to right; a loop's ``repeat``
edges go back from the end of its body to the loop (the only edges that
point backwards).

Steps without a record are ``pending`` while the run may still reach them
and ``skipped`` when it cannot: the run ended, or a condition or router
chose another way.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from schemas.workflows import StepType, WorkflowDefinition, WorkflowStep
from services.control_plane.workflow_view import OPEN, TERMINAL
from shared.mongo import Doc

__all__ = ["edges", "graph"]

_CONTAINERS = (StepType.PARALLEL, StepType.LOOP)
_CHOICES = frozenset({"then", "otherwise", "route", "default"})
_NODE_FIELDS = ("kind", "path", "iteration", "state", "started_at", "ended_at", "duration_ms",
                "attempts", "run_id", "error", "output", "next", "loop_iterations", "message",
                "approved_by")


def _members(first: str, by_id: Mapping[str, WorkflowStep]) -> list[str]:
    """Steps of the scope starting at ``first``, in walk order."""
    seen: list[str] = []
    stack = [first]
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.append(current)
            stack.extend(reversed(by_id[current].successors()))
    return seen


def _ends_scope(step: WorkflowStep) -> bool:
    if step.type is StepType.CONDITION:
        return step.otherwise is None
    if step.type is StepType.ROUTER:
        return False  # every answer goes somewhere (or fails the step)
    return step.next is None


class _Graph:
    def __init__(self, definition: WorkflowDefinition) -> None:
        self.by_id = {s.id: s for s in definition.steps}
        self.parent: dict[str, str | None] = {}
        self._exits: dict[str, list[str]] = {}
        self._assign(definition.first, None)

    def _assign(self, first: str, parent: str | None) -> None:
        for member in _members(first, self.by_id):
            self.parent[member] = parent
            for child in self.by_id[member].children():
                self._assign(child, member)

    def exits(self, step_id: str) -> list[str]:
        """Where control leaves ``step_id`` for its ``next``: itself, or its scopes' ends."""
        if step_id not in self._exits:
            step = self.by_id[step_id]
            found: list[str] = []
            if step.type in _CONTAINERS:
                for first in step.children():
                    for member in _members(first, self.by_id):
                        if _ends_scope(self.by_id[member]):
                            found += [e for e in self.exits(member) if e not in found]
            else:
                found = [step_id]
            self._exits[step_id] = found
        return self._exits[step_id]


def _edge(source: str, target: str, kind: str, label: str | None = None) -> Doc:
    return {"source": source, "target": target, "kind": kind, "label": label}


def edges(definition: WorkflowDefinition) -> list[Doc]:
    """Every edge of the definition, in step order; the labels of parallel edges are merged."""
    return _edges(definition, _Graph(definition))


def _edges(definition: WorkflowDefinition, g: _Graph) -> list[Doc]:
    found: list[Doc] = []
    for step in definition.steps:
        if step.type in _CONTAINERS:
            opening = "branch" if step.type is StepType.PARALLEL else "body"
            found += [_edge(step.id, first, opening) for first in step.children()]
            if step.next is not None:
                going_on = "join" if step.type is StepType.PARALLEL else "exit"
                found += [_edge(end, step.next, going_on) for end in g.exits(step.id)]
            if step.type is StepType.LOOP:
                found += [_edge(end, step.id, "repeat") for end in g.exits(step.id)]
        elif step.type is StepType.CONDITION:
            assert step.then is not None
            found.append(_edge(step.id, step.then, "then", "then"))
            if step.otherwise is not None:
                found.append(_edge(step.id, step.otherwise, "otherwise", "else"))
        elif step.type is StepType.ROUTER:
            found += [_edge(step.id, target, "route", label) for label, target in step.routes.items()]
            if step.default is not None:
                found.append(_edge(step.id, step.default, "default", "default"))
        elif step.next is not None:
            found.append(_edge(step.id, step.next, "next"))
    merged: dict[tuple[str, str, str], Doc] = {}
    for edge in found:
        key = (edge["source"], edge["target"], edge["kind"])
        if key in merged and edge["label"]:
            merged[key]["label"] = f"{merged[key]['label']}, {edge['label']}"
        merged.setdefault(key, edge)
    return list(merged.values())


def _reachable(first: str, all_edges: list[Doc], records: Mapping[str, Doc]) -> set[str]:
    """Steps the run may still get to, given the choices already made and the failures."""
    outgoing: dict[str, list[Doc]] = {}
    for edge in all_edges:
        if edge["kind"] != "repeat":
            outgoing.setdefault(edge["source"], []).append(edge)
    seen = {first}
    stack = [first]
    while stack:
        current = stack.pop()
        record = records.get(current)
        state = record["state"] if record else "pending"
        if state in ("failed", "cancelled"):
            continue
        chosen = record.get("next") if record and state == "completed" else None
        for edge in outgoing.get(current, []):
            if edge["kind"] in _CHOICES and chosen is not None and edge["target"] != chosen:
                continue
            if edge["target"] not in seen:
                seen.add(edge["target"])
                stack.append(edge["target"])
    return seen


def _node(step_id: str, record: Doc | None, now: datetime) -> Doc:
    node: Doc = {"id": step_id, **{f: (record or {}).get(f) for f in _NODE_FIELDS}}
    node["attempts"] = node["attempts"] or 0
    started = node["started_at"]
    node["elapsed_ms"] = (max(0, round((now - started).total_seconds() * 1000))
                          if node["state"] in OPEN and started is not None else None)
    return node


def graph(definition: WorkflowDefinition | None, run: Doc, now: datetime) -> dict[str, Any]:
    """Nodes (definition order, then steps only the events know) and edges of a run's document.

    Without the definition (a version this control plane never saw) the nodes
    are the steps the events name, without edges.
    """
    records: dict[str, Doc] = {s["id"]: s for s in run.get("steps", [])}
    nodes: list[Doc] = []
    all_edges: list[Doc] = []
    if definition is not None:
        g = _Graph(definition)
        all_edges = _edges(definition, g)
        possible = (set() if run.get("status") in TERMINAL
                    else _reachable(definition.first, all_edges, records))
        for step in definition.steps:
            node = _node(step.id, records.get(step.id), now)
            node.update(kind=step.type.value, description=step.description,
                        parent=g.parent.get(step.id))
            if step.id not in records:
                node["state"] = "pending" if step.id in possible else "skipped"
            nodes.append(node)
    known = {n["id"] for n in nodes}
    for record in run.get("steps", []):
        if record["id"] not in known:
            nodes.append(_node(record["id"], record, now) | {"description": "", "parent": None})
    return {"start": definition.first if definition else None,
            "graph_known": definition is not None, "nodes": nodes, "edges": all_edges}
