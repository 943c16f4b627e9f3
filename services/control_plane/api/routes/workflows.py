"""Workflow runs: start one, list them, see one as its graph, and steer it.

Reads need any valid token; starting and commands need ``operator``, like
runs, and each is audited once (``workflow.submit``, ``workflow.cancel``,
``workflow.approve``, ``workflow.reject``; target ``workflow_run:<id>``).
The data read is the control plane's view of ``mindstream.workflows.events.v1``
and of the definitions topic (:mod:`services.control_plane.workflow_view`).

A start publishes a ``WorkflowRequested`` (the client's ``workflow_run_id`` is
its idempotency key: a repeat is the same run) and answers 202: the
workflows service starts the run. It is refused while the kill switch is on
(a workflow's steps are new runs), for a workflow this control plane has no
definition of, and for an id already used by another workflow. Commands
publish a ``WorkflowCommand``; approve and reject are refused unless the view
shows the run waiting for an approval (the matching one, when ``step`` names it).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from schemas.base import Id
from schemas.envelope import deterministic_id
from schemas.topics import WORKFLOWS_COMMANDS, WORKFLOWS_REQUESTED
from schemas.workflows import WorkflowCommandKind
from services.control_plane.api.context import ApiContext, CallerDep, ContextDep, actor_of
from services.control_plane.api.models import (
    WorkflowApprovalBody,
    WorkflowCancelBody,
    WorkflowCommandIssued,
    WorkflowRunDetail,
    WorkflowRunOut,
    WorkflowRunSubmit,
    WorkflowRunSubmitted,
)
from services.control_plane.api.pagination import Cursor, Limit, Page, paginate
from services.control_plane.errors import Conflict, NotFound
from services.control_plane.store import WORKFLOW_RUNS_VIEW
from services.control_plane.tokens import Principal, Scope
from services.control_plane.workflow_graph import graph
from services.control_plane.workflow_view import TERMINAL
from shared.workflow_messages import (
    build_workflow_command,
    build_workflow_request,
    new_workflow_run_id,
)

router = APIRouter(prefix="/workflows", tags=["workflows"])

WorkflowRunPath = Annotated[Id, Path(description="Workflow run id.")]


def _out(doc: dict[str, Any]) -> dict[str, Any]:
    return {**{k: v for k, v in doc.items() if k != "steps"}, "id": doc["_id"]}


@router.get("/runs", response_model=Page[WorkflowRunOut], summary="List workflow runs, newest first")
async def list_workflow_runs(
    ctx: ContextDep, caller: CallerDep, limit: Limit = 50, cursor: Cursor = None,
    status: Annotated[str | None, Query(max_length=32)] = None,
    workflow_id: Annotated[str | None, Query(max_length=128,
                                             description="Workflow, without version.")] = None,
) -> Page[WorkflowRunOut]:
    query = {k: v for k, v in {"status": status, "workflow_id": workflow_id}.items()
             if v is not None}
    docs, next_cursor = await paginate(ctx.db[WORKFLOW_RUNS_VIEW], query, sort_field="created_at",
                                       limit=limit, cursor=cursor)
    return Page(items=[WorkflowRunOut.model_validate(_out(d)) for d in docs],
                next_cursor=next_cursor)


@router.get("/runs/{workflow_run_id}", response_model=WorkflowRunDetail,
            summary="A workflow run as its graph: steps with state and duration, and edges")
async def get_workflow_run(workflow_run_id: WorkflowRunPath, ctx: ContextDep,
                           caller: CallerDep) -> WorkflowRunDetail:
    doc = await ctx.workflows.get(workflow_run_id)
    if doc is None:
        raise NotFound(f"no workflow run {workflow_run_id} seen by the control plane")
    drawn = graph(await ctx.workflows.definition_of(doc), doc, ctx.clock())
    return WorkflowRunDetail.model_validate({**_out(doc), **drawn})


@router.post("/runs", status_code=202, response_model=WorkflowRunSubmitted,
             summary="Start a workflow run")
async def submit_workflow_run(body: WorkflowRunSubmit, ctx: ContextDep,
                              caller: CallerDep) -> WorkflowRunSubmitted:
    workflow_run_id = body.workflow_run_id or new_workflow_run_id()
    ref = body.ref()
    async with ctx.audited(caller, Scope.OPERATOR, "workflow.submit",
                           ("workflow_run", workflow_run_id)) as audit:
        audit.details = {"workflow_id": ref, "user_id": body.user_id}
        switch = await ctx.kill_switch.state()
        if switch["enabled"]:
            why = f": {switch['reason']}" if switch.get("reason") else ""
            raise Conflict(f"the global kill switch is on; new workflow runs are refused{why}")
        if not await ctx.workflows.knows(ref):
            raise NotFound(f"no workflow {ref} seen by the control plane "
                           "(apply it: mindstream workflows apply -f FILE)")
        existing = await ctx.workflows.get(workflow_run_id)
        if existing is not None and existing["workflow_id"] != ref.partition("@")[0]:
            raise Conflict(f"workflow run {workflow_run_id} already exists, for workflow "
                           f"{existing['workflow_id']}")
        request = build_workflow_request(
            ref, body.input, user=body.user_id, workflow_run_id=workflow_run_id,
            session=body.session_id, metadata=body.metadata, requested_at=ctx.clock())
        await ctx.workflows.requested(request, submitted_by=caller.token_id)
        await ctx.publisher.publish(
            WORKFLOWS_REQUESTED, request, correlation_id=workflow_run_id,
            message_id=deterministic_id("workflow-requested", workflow_run_id))
    return WorkflowRunSubmitted(workflow_run_id=workflow_run_id, workflow_id=ref,
                                status="requested")


def _awaiting(run: dict[str, Any], step: str | None) -> bool:
    return any(s.get("state") == "awaiting_approval"
               and (step is None or step in (s.get("id"), s.get("path")))
               for s in run.get("steps", []))


async def _command(ctx: ApiContext, caller: Principal, workflow_run_id: str,
                   kind: WorkflowCommandKind, reason: str | None,
                   step: str | None = None) -> WorkflowCommandIssued:
    async with ctx.audited(caller, Scope.OPERATOR, f"workflow.{kind.value}",
                           ("workflow_run", workflow_run_id)) as audit:
        run = await ctx.workflows.get(workflow_run_id)
        if run is None:
            raise NotFound(f"no workflow run {workflow_run_id} seen by the control plane")
        if run["status"] in TERMINAL:
            raise Conflict(f"workflow run {workflow_run_id} already ended ({run['status']})")
        if kind is not WorkflowCommandKind.CANCEL and not _awaiting(run, step):
            which = f"approval step {step}" if step else "an approval"
            raise Conflict(f"workflow run {workflow_run_id} is not waiting for {which} "
                           f"(status {run['status']})")
        command = build_workflow_command(workflow_run_id, kind, actor_of(caller), step=step,
                                         reason=reason, issued_at=ctx.clock())
        audit.details = {"command_id": command.command_id, **({"step": step} if step else {})}
        await ctx.publisher.publish(WORKFLOWS_COMMANDS, command, correlation_id=workflow_run_id,
                                    message_id=command.command_id)
    return WorkflowCommandIssued(command_id=command.command_id, workflow_run_id=workflow_run_id,
                                 command=kind.value)


@router.post("/runs/{workflow_run_id}/cancel", status_code=202,
             response_model=WorkflowCommandIssued, summary="Cancel a workflow run")
async def cancel_workflow_run(workflow_run_id: WorkflowRunPath, ctx: ContextDep,
                              caller: CallerDep, body: WorkflowCancelBody | None = None,
                              ) -> WorkflowCommandIssued:
    body = body or WorkflowCancelBody()
    return await _command(ctx, caller, workflow_run_id, WorkflowCommandKind.CANCEL, body.reason)


@router.post("/runs/{workflow_run_id}/approve", status_code=202,
             response_model=WorkflowCommandIssued,
             summary="Approve the waiting approval step of a workflow run")
async def approve_workflow_run(workflow_run_id: WorkflowRunPath, ctx: ContextDep,
                               caller: CallerDep, body: WorkflowApprovalBody | None = None,
                               ) -> WorkflowCommandIssued:
    body = body or WorkflowApprovalBody()
    return await _command(ctx, caller, workflow_run_id, WorkflowCommandKind.APPROVE,
                          body.reason, body.step)


@router.post("/runs/{workflow_run_id}/reject", status_code=202,
             response_model=WorkflowCommandIssued,
             summary="Reject the waiting approval step of a workflow run (the step fails)")
async def reject_workflow_run(workflow_run_id: WorkflowRunPath, ctx: ContextDep,
                              caller: CallerDep, body: WorkflowApprovalBody | None = None,
                              ) -> WorkflowCommandIssued:
    body = body or WorkflowApprovalBody()
    return await _command(ctx, caller, workflow_run_id, WorkflowCommandKind.REJECT,
                          body.reason, body.step)
