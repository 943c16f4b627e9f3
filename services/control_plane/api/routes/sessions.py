"""Sessions and their messages, as the control plane saw them on topics.

The memory service owns the sessions' durable history; this is the
control plane's view: the runs of a session (from run events) and their
turns (from ``runs.completed``, or the input it submitted itself while a
run is still going).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from schemas.base import Id
from services.control_plane.api.context import CallerDep, ContextDep
from services.control_plane.api.models import MessageOut, SessionOut
from services.control_plane.api.pagination import Cursor, Limit, Page, paginate
from services.control_plane.errors import NotFound
from services.control_plane.store import RUNS_VIEW, SESSIONS_VIEW

router = APIRouter(prefix="/sessions", tags=["sessions"])

SessionPath = Annotated[Id, Path(description="Session id.")]


@router.get("", response_model=Page[SessionOut], summary="List sessions, most recent first")
async def list_sessions(ctx: ContextDep, caller: CallerDep, limit: Limit = 50,
                        cursor: Cursor = None) -> Page[SessionOut]:
    docs, next_cursor = await paginate(ctx.db[SESSIONS_VIEW], {}, sort_field="last_at",
                                       limit=limit, cursor=cursor)
    items = [SessionOut.model_validate({
        **d, "id": d["_id"],
        "runs": await ctx.db[RUNS_VIEW].count_documents({"session_id": d["_id"]})})
        for d in docs]
    return Page(items=items, next_cursor=next_cursor)


@router.get("/{session_id}/messages", response_model=Page[MessageOut],
            summary="Turns of a session, oldest first (paged by run)")
async def session_messages(session_id: SessionPath, ctx: ContextDep, caller: CallerDep,
                           limit: Limit = 50, cursor: Cursor = None) -> Page[MessageOut]:
    if await ctx.db[SESSIONS_VIEW].find_one({"_id": session_id}) is None:
        raise NotFound(f"no session {session_id} seen by the control plane")
    runs, next_cursor = await paginate(ctx.db[RUNS_VIEW], {"session_id": session_id},
                                       sort_field="created_at", limit=limit, cursor=cursor,
                                       ascending=True)
    return Page(items=[m for run in runs for m in _turns(run)], next_cursor=next_cursor)


def _turns(run: dict[str, Any]) -> list[MessageOut]:
    at = run.get("ended_at") or run.get("created_at")
    messages = run.get("messages")
    if messages:
        return [MessageOut(run_id=run["_id"], role=m["role"], content=m.get("content"), at=at)
                for m in messages]
    turns = []
    if run.get("input") is not None:
        turns.append(MessageOut(run_id=run["_id"], role="user", content=run["input"],
                                at=run.get("created_at")))
    if run.get("output") is not None:
        turns.append(MessageOut(run_id=run["_id"], role="assistant", content=run["output"], at=at))
    return turns
