"""Runs: submit (publishes RunRequested), list, inspect, and command (cancel/approve/reject).

Submissions are refused (409, audited) while the kill switch is on or the
agent is paused. The kill switch guards this path only: a RunRequested
published straight to Kafka does not pass through here (see
:mod:`services.control_plane.control`).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from schemas.agents import split_agent_ref
from schemas.base import Id
from schemas.envelope import deterministic_id
from schemas.runs import RunCommand, RunCommandKind, RunRequested
from schemas.topics import RUNS_COMMANDS, RUNS_REQUESTED
from services.control_plane.api.context import ApiContext, CallerDep, ContextDep, actor_of
from services.control_plane.api.models import (
    CommandBody,
    CommandIssued,
    RunDetail,
    RunOut,
    RunSubmit,
    RunSubmitted,
)
from services.control_plane.api.pagination import Cursor, Limit, Page, paginate
from services.control_plane.errors import ApiProblem, Conflict, NotFound
from services.control_plane.store import RUN_EVENTS_VIEW, RUNS_VIEW
from services.control_plane.timeline import timeline
from services.control_plane.tokens import Principal, Scope
from services.control_plane.views import TERMINAL

router = APIRouter(prefix="/runs", tags=["runs"])

RunPath = Annotated[Id, Path(description="Run id.")]
MAX_EVENTS = 1000


def run_out(doc: dict[str, Any]) -> RunOut:
    return RunOut.model_validate({**doc, "id": doc["_id"]})


@router.get("", response_model=Page[RunOut], summary="List runs, newest first")
async def list_runs(
    ctx: ContextDep, caller: CallerDep, limit: Limit = 50, cursor: Cursor = None,
    status: Annotated[str | None, Query(max_length=32)] = None,
    agent_id: Annotated[str | None, Query(max_length=138)] = None,
    session_id: Annotated[str | None, Query(max_length=128)] = None,
    user_id: Annotated[str | None, Query(max_length=128)] = None,
    since: datetime | None = None, until: datetime | None = None,
) -> Page[RunOut]:
    query: dict[str, Any] = {k: v for k, v in {"status": status, "agent_id": agent_id,
                                               "session_id": session_id,
                                               "user_id": user_id}.items() if v is not None}
    if since or until:
        query["created_at"] = {**({"$gte": since} if since else {}),
                               **({"$lt": until} if until else {})}
    docs, next_cursor = await paginate(ctx.db[RUNS_VIEW], query, sort_field="created_at",
                                       limit=limit, cursor=cursor)
    return Page(items=[run_out(d) for d in docs], next_cursor=next_cursor)


@router.get("/{run_id}", response_model=RunDetail, summary="A run with its events and timeline")
async def get_run(run_id: RunPath, ctx: ContextDep, caller: CallerDep) -> RunDetail:
    doc = await ctx.db[RUNS_VIEW].find_one({"_id": run_id})
    if doc is None:
        raise NotFound(f"no run {run_id} seen by the control plane")
    events = await ctx.db[RUN_EVENTS_VIEW].find({"run_id": run_id}).sort("seq", 1).limit(
        MAX_EVENTS).to_list()
    for event in events:
        event.pop("_id", None)
    return RunDetail.model_validate({**doc, "id": doc["_id"], "events": events,
                                     "timeline": timeline(events)})


@router.post("", status_code=202, response_model=RunSubmitted, summary="Submit a run")
async def submit_run(body: RunSubmit, ctx: ContextDep, caller: CallerDep) -> RunSubmitted:
    run_id = body.run_id or f"run-{uuid.uuid4().hex}"
    session_id = body.session_id or f"session-{uuid.uuid4().hex}"
    async with ctx.audited(caller, Scope.OPERATOR, "run.submit", ("run", run_id)) as audit:
        audit.details = {"agent_id": body.agent_id, "session_id": session_id}
        switch = await ctx.kill_switch.state()
        if switch["enabled"]:
            why = f": {switch['reason']}" if switch.get("reason") else ""
            raise Conflict(f"the global kill switch is on; new runs are refused{why}")
        agent_id, _ = split_agent_ref(body.agent_id)
        agent = await ctx.agents.get(agent_id)
        if agent is None:
            raise NotFound(f"no agent {agent_id}")
        if agent["paused"]:
            raise Conflict(f"agent {agent_id} is paused; resume it to accept runs")
        request = RunRequested(run_id=run_id, agent_id=body.agent_id, session_id=session_id,
                               user_id=body.user_id, input=body.input, priority=body.priority,
                               metadata=body.metadata, requested_at=ctx.clock())
        await ctx.runs.requested(request, submitted_by=caller.token_id)
        await ctx.publisher.publish(RUNS_REQUESTED, request, correlation_id=run_id,
                                    message_id=deterministic_id("run-requested", run_id))
    return RunSubmitted(run_id=run_id, session_id=session_id, status="requested")


async def _command(ctx: ApiContext, caller: Principal, run_id: str, kind: RunCommandKind,
                   body: CommandBody | None) -> CommandIssued:
    body = body or CommandBody()
    async with ctx.audited(caller, Scope.OPERATOR, f"run.{kind.value}", ("run", run_id)) as audit:
        run = await ctx.db[RUNS_VIEW].find_one({"_id": run_id})
        if run is None:
            raise NotFound(f"no run {run_id} seen by the control plane")
        if run["status"] in TERMINAL:
            raise Conflict(f"run {run_id} already ended ({run['status']})")
        if kind is RunCommandKind.CANCEL and body.call_id is not None:
            raise ApiProblem("call_id is only for approve and reject")
        command = RunCommand(command_id=f"cmd-{uuid.uuid4().hex}", run_id=run_id,
                             session_id=run["session_id"], command=kind, actor=actor_of(caller),
                             reason=body.reason, call_id=body.call_id, issued_at=ctx.clock())
        audit.details = {"command_id": command.command_id,
                         **({"call_id": body.call_id} if body.call_id else {})}
        await ctx.publisher.publish(RUNS_COMMANDS, command, correlation_id=run_id,
                                    message_id=command.command_id)
    return CommandIssued(command_id=command.command_id, run_id=run_id, command=kind.value)


@router.post("/{run_id}/cancel", status_code=202, response_model=CommandIssued,
             summary="Cancel a run")
async def cancel_run(run_id: RunPath, ctx: ContextDep, caller: CallerDep,
                     body: CommandBody | None = None) -> CommandIssued:
    return await _command(ctx, caller, run_id, RunCommandKind.CANCEL, body)


@router.post("/{run_id}/approve", status_code=202, response_model=CommandIssued,
             summary="Approve the pending tool call of a run")
async def approve_run(run_id: RunPath, ctx: ContextDep, caller: CallerDep,
                      body: CommandBody | None = None) -> CommandIssued:
    return await _command(ctx, caller, run_id, RunCommandKind.APPROVE, body)


@router.post("/{run_id}/reject", status_code=202, response_model=CommandIssued,
             summary="Reject the pending tool call of a run")
async def reject_run(run_id: RunPath, ctx: ContextDep, caller: CallerDep,
                     body: CommandBody | None = None) -> CommandIssued:
    return await _command(ctx, caller, run_id, RunCommandKind.REJECT, body)
