"""Read models of workflows: every definition version seen, and one document per workflow run.

A workflow run's document is a fold of its ``mindstream.workflows.events.v1``
events (:func:`fold`). The events of one run arrive in order (they are keyed
by the run), but a redelivery or a replay repeats them and a consumer that
lost its commit re-reads them, so the fold converges whatever the order:

- each step's state is written with the seq of the event that set it, and
  only a higher seq replaces it; its start time comes only from
  ``step.started``, its attempts only grow;
- inside a loop a step runs once per iteration (its path says which:
  ``refine.2/draft``); the step's record shows its newest iteration, and the
  events of an older one change nothing;
- the run's end is final (the lowest-seq end wins), and steps still open at
  the end are shown cancelled: the engine cancels them without a step event;
- the run's status is derived from what is known: ended, waiting for an
  approval, or running.

A run started through the API is recorded before its request is published
(:meth:`WorkflowsView.requested`), as ``requested`` with its input and user:
it is listed at once, and the first event folds into that document (taking
the version the engine resolved when the request did not pin one).

The document is rewritten whole under optimistic concurrency; a redelivered
event folds to the same document and writes nothing. Times are kept to the
millisecond, as MongoDB stores them, so that comparison holds.

Definitions are kept per version (``_id`` ``"<workflow>@<version>"``): the
compacted topic keeps only the newest version of each workflow, and a run may
have pinned an older one whose graph the dashboard still has to draw.
"""

from __future__ import annotations

import copy
import logging
import re
from datetime import datetime

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from schemas.workflows import (
    WorkflowDefinition,
    WorkflowEvent,
    WorkflowEventKind,
    WorkflowRequested,
)
from services.control_plane.store import WORKFLOW_DEFINITIONS_VIEW, WORKFLOW_RUNS_VIEW
from shared.errors import ConflictError
from shared.kafka.consumer import Delivery
from shared.mongo import Doc, update_versioned

__all__ = ["OPEN", "STEP_STATES", "TERMINAL", "WorkflowsView", "fold", "requested_run", "split_path"]

log = logging.getLogger("mindstream.control_plane.workflows")

TERMINAL = frozenset({"completed", "failed", "cancelled"})
OPEN = frozenset({"running", "retrying", "awaiting_approval"})
STEP_STATES = ("pending", "running", "retrying", "awaiting_approval", "completed", "failed",
               "cancelled", "skipped")
"""Every state a step is shown in; ``pending`` and ``skipped`` are derived from the graph."""

_STEP_STATE = {
    WorkflowEventKind.STEP_STARTED: "running",
    WorkflowEventKind.AWAITING_APPROVAL: "awaiting_approval",
    WorkflowEventKind.RESUMED: "running",
    WorkflowEventKind.STEP_RETRYING: "retrying",
    WorkflowEventKind.STEP_COMPLETED: "completed",
    WorkflowEventKind.STEP_FAILED: "failed",
}
_RUN_END = {
    WorkflowEventKind.COMPLETED: "completed",
    WorkflowEventKind.FAILED: "failed",
    WorkflowEventKind.CANCELLED: "cancelled",
}
_LABEL = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_OUTPUT_CLIP = 500
_CONFLICT_ATTEMPTS = 5


def _ms(at: datetime) -> datetime:
    return at.replace(microsecond=at.microsecond - at.microsecond % 1000)


def _between(start: datetime, end: datetime) -> int:
    return max(0, round((end - start).total_seconds() * 1000))


def split_path(path: str) -> tuple[str, list[int]] | None:
    """``"outer.2/inner.3/draft"`` -> ``("draft", [2, 3])``; None for a path that is not one."""
    *loops, step_id = path.split("/")
    iterations: list[int] = []
    for segment in loops:
        loop_id, dot, number = segment.rpartition(".")
        if not dot or not _LABEL.fullmatch(loop_id) or not number.isdigit():
            return None
        iterations.append(int(number))
    return (step_id, iterations) if _LABEL.fullmatch(step_id) else None


def _split_ref(ref: str) -> tuple[str, int | None]:
    name, _, version = ref.partition("@")
    return name, int(version) if version.isdigit() else None


def _clip(text: str | None) -> str | None:
    if text is None or len(text) <= _OUTPUT_CLIP:
        return text
    return text[: _OUTPUT_CLIP - 1] + "…"


def _text(value: object) -> str | None:
    """A string from an event's free-form ``data``, or None (never a shape the API cannot show)."""
    return _clip(value) if isinstance(value, str) else None


def _new_run(workflow_run_id: str, ref: str, at: datetime, *, status: str = "running",
             last_seq: int = -1) -> Doc:
    name, version = _split_ref(ref)
    return {"_id": workflow_run_id, "version": 0, "workflow_id": name,
            "workflow_version": version, "workflow_ref": ref,
            "status": status, "created_at": at, "updated_at": at, "started_at": None,
            "ended_at": None, "end_seq": None, "last_seq": last_seq, "duration_ms": None,
            "deadline": None, "steps_total": None, "output": None, "error": None, "steps": []}


def requested_run(request: WorkflowRequested, submitted_by: str | None) -> Doc:
    """The document of a run the control plane itself submitted, before any event."""
    doc = _new_run(request.workflow_run_id, request.workflow_id, _ms(request.requested_at),
                   status="requested")
    doc.update(_request_fields(request, submitted_by))
    return doc


def _request_fields(request: WorkflowRequested, submitted_by: str | None) -> Doc:
    return {"input": request.input, "user_id": request.user_id,
            "session_id": request.session_id, "submitted_by": submitted_by,
            "metadata": dict(request.metadata)}


def _new_step(step_id: str, path: str, iterations: list[int], first_seq: int) -> Doc:
    return {"id": step_id, "path": path, "iterations": iterations,
            "iteration": iterations[-1] if iterations else None, "kind": None,
            "state": "running", "state_seq": -1, "started_at": None, "ended_at": None,
            "duration_ms": None, "attempts": 0, "run_id": None, "run_seq": -1, "error": None,
            "output": None, "next": None, "loop_iterations": None, "message": None,
            "approved_by": None, "first_seq": first_seq}


def fold(doc: Doc | None, event: WorkflowEvent) -> Doc:
    """The run's document with ``event`` applied (a new dict; ``doc`` is left as it was)."""
    at = _ms(event.at)
    run = (copy.deepcopy(doc) if doc is not None
           else _new_run(event.workflow_run_id, event.workflow_id, at, last_seq=event.seq))
    if run["workflow_version"] is None and _split_ref(event.workflow_id)[1] is not None:
        # requested unpinned: every event names the version the engine resolved
        name, version = _split_ref(event.workflow_id)
        run.update(workflow_id=name, workflow_version=version, workflow_ref=event.workflow_id)
    run["created_at"] = min(run["created_at"], at)
    run["updated_at"] = max(run["updated_at"], at)
    run["last_seq"] = max(run["last_seq"], event.seq)
    if event.kind is WorkflowEventKind.STARTED:
        run["started_at"] = at
        run["deadline"] = _text(event.data.get("deadline"))
        steps = event.data.get("steps")
        run["steps_total"] = steps if isinstance(steps, int) else None
    end = _RUN_END.get(event.kind)
    if end is not None and (run["end_seq"] is None or event.seq < run["end_seq"]):
        run.update(status=end, end_seq=event.seq, ended_at=at, output=event.output,
                   error=event.reason)
    if event.step is not None:
        _fold_step(run, event, at)
    _settle(run)
    return run


def _fold_step(run: Doc, event: WorkflowEvent, at: datetime) -> None:
    assert event.step is not None
    parsed = split_path(event.step)
    if parsed is None:
        log.warning("workflow run %s: event %d names no step we can show (%r)",
                    event.workflow_run_id, event.seq, event.step[:200])
        return
    step_id, iterations = parsed
    steps: dict[str, Doc] = {s["id"]: s for s in run["steps"]}
    step = steps.get(step_id)
    if step is None or iterations > step["iterations"]:
        first = event.seq if step is None else min(step["first_seq"], event.seq)
        step = steps[step_id] = _new_step(step_id, event.step, iterations, first)
    else:
        step["first_seq"] = min(step["first_seq"], event.seq)
        if iterations < step["iterations"]:
            return  # an older iteration's event: the newest one is shown
    _apply_to_step(step, event, at)
    run["steps"] = sorted(steps.values(), key=lambda s: (s["first_seq"], s["id"]))


def _apply_to_step(step: Doc, event: WorkflowEvent, at: datetime) -> None:
    kind, data = event.kind, event.data
    if event.step_type is not None:
        step["kind"] = event.step_type.value
    next_attempt = data.get("next_attempt") if kind is WorkflowEventKind.STEP_RETRYING else None
    step["attempts"] = max(step["attempts"], event.attempt or 0,
                           next_attempt if isinstance(next_attempt, int) else 0)
    if event.run_id is not None and event.seq > step["run_seq"]:
        step["run_id"], step["run_seq"] = event.run_id, event.seq
    if kind is WorkflowEventKind.STEP_STARTED:
        step["started_at"] = at
    elif kind is WorkflowEventKind.AWAITING_APPROVAL:
        step["message"] = _text(data.get("message"))
    elif kind is WorkflowEventKind.RESUMED:
        step["approved_by"] = _text(data.get("approved_by"))
    state = _STEP_STATE.get(kind)
    if state is None or event.seq <= step["state_seq"]:
        return
    step["state"], step["state_seq"] = state, event.seq
    if state in ("completed", "failed"):
        step["ended_at"] = at
        step["error"] = event.reason if state == "failed" else None
        step["output"] = _clip(event.output)
        if state == "completed":
            chosen = data.get("next")
            step["next"] = chosen if isinstance(chosen, str) else None
            iterations = data.get("iterations")
            step["loop_iterations"] = iterations if isinstance(iterations, int) else None
    else:
        step["ended_at"] = None
        if state == "retrying":
            step["error"] = event.reason


def _settle(run: Doc) -> None:
    """What follows from everything known: cancelled open steps, durations, the run's status."""
    end_seq = run["end_seq"]
    for step in run["steps"]:
        if end_seq is not None and step["state"] in OPEN and step["state_seq"] < end_seq:
            step["state"], step["ended_at"] = "cancelled", run["ended_at"]
            step["error"] = step["error"] or "workflow ended"
        started, ended = step["started_at"], step["ended_at"]
        step["duration_ms"] = (_between(started, ended)
                               if started is not None and ended is not None else None)
    if end_seq is None:
        waiting = any(s["state"] == "awaiting_approval" for s in run["steps"])
        run["status"] = "awaiting_approval" if waiting else "running"
    if run["ended_at"] is not None:  # from the first event seen: the run's own start
        run["duration_ms"] = _between(run["created_at"], run["ended_at"])


class WorkflowsView:
    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self._db = db
        self._runs = db[WORKFLOW_RUNS_VIEW]
        self._definitions = db[WORKFLOW_DEFINITIONS_VIEW]

    async def definition(self, definition: WorkflowDefinition) -> None:
        """Keep this version (a republished version is the same graph: replaced, not added)."""
        doc = {"workflow_id": definition.id, "version": definition.version,
               "definition": definition.model_dump(mode="json")}
        try:
            await self._definitions.replace_one({"_id": definition.ref()}, doc, upsert=True)
        except DuplicateKeyError:
            pass  # another replica inserted the same version first

    async def event(self, event: WorkflowEvent) -> None:
        """Fold ``event`` into its run's document, re-reading on a lost race."""
        for _ in range(_CONFLICT_ATTEMPTS):
            doc = await self._runs.find_one({"_id": event.workflow_run_id})
            new = fold(doc, event)
            if doc is None:
                try:
                    await self._runs.insert_one(new)
                except DuplicateKeyError:
                    continue
                return
            if new == doc:
                return  # a redelivery: nothing new
            changed = {k: v for k, v in new.items() if k not in ("_id", "version")}
            try:
                await update_versioned(self._db, WORKFLOW_RUNS_VIEW, doc["_id"], doc["version"],
                                       {"$set": changed})
            except ConflictError:
                continue
            return
        raise ConflictError(f"workflow run {event.workflow_run_id}: its view kept changing")

    async def requested(self, request: WorkflowRequested, *, submitted_by: str | None) -> None:
        """Record a run submitted through the API; its events may already have folded in."""
        try:
            await self._runs.insert_one(requested_run(request, submitted_by))
        except DuplicateKeyError:
            # events came first, or a repeat: the first request's input stays
            await self._runs.update_one(
                {"_id": request.workflow_run_id, "input": {"$exists": False}},
                {"$set": _request_fields(request, submitted_by)})

    async def knows(self, ref: str) -> bool:
        """Whether a definition of ``ref`` (``name``: any version; ``name@2``: that one) is kept."""
        name, version = _split_ref(ref)
        query = {"workflow_id": name} if version is None else {"_id": f"{name}@{version}"}
        return await self._definitions.find_one(query, projection={"_id": 1}) is not None

    async def get(self, workflow_run_id: str) -> Doc | None:
        return await self._runs.find_one({"_id": workflow_run_id})

    async def definition_of(self, run: Doc) -> WorkflowDefinition | None:
        """The version the run used, if this control plane has seen it."""
        if run.get("workflow_version") is None:
            return None
        found = await self._definitions.find_one(
            {"_id": f"{run['workflow_id']}@{run['workflow_version']}"})
        if found is None:
            return None
        try:
            return WorkflowDefinition.model_validate(found["definition"])
        except ValueError:
            log.warning("stored definition %s no longer validates", found["_id"])
            return None

    async def handle_definition(self, delivery: Delivery[WorkflowDefinition]) -> None:
        await self.definition(delivery.message)

    async def handle_event(self, delivery: Delivery[WorkflowEvent]) -> None:
        await self.event(delivery.message)
