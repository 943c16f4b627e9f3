"""Workflow runs: list them, and see one as its graph with each step's state and duration.

Read only, like run reads: any valid token. The data is the control plane's
view of ``mindstream.workflows.events.v1`` and of the definitions topic
(:mod:`services.control_plane.workflow_view`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from schemas.base import Id
from services.control_plane.api.context import CallerDep, ContextDep
from services.control_plane.api.models import WorkflowRunDetail, WorkflowRunOut
from services.control_plane.api.pagination import Cursor, Limit, Page, paginate
from services.control_plane.errors import NotFound
from services.control_plane.store import WORKFLOW_RUNS_VIEW
from services.control_plane.workflow_graph import graph

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
