"""Memories of a user: list and delete, through the memory service's own store functions.

The control plane does not read memory's collections itself; it calls
``services.memory.store.MemoryStore`` (``memories_of``, ``delete_memories``),
so the document shape stays memory's business. This is an in-process
shortcut until memory offers a command topic; where the memory package is
not installed the routes answer 501 with that explanation. Deleting is
audited (the deleted memory's digest as ``before``).
"""

from __future__ import annotations

import importlib
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel

from schemas.base import Id
from services.control_plane.api.context import ApiContext, CallerDep, ContextDep
from services.control_plane.api.pagination import Cursor, Limit, Page, decode_offset, offset_cursor
from services.control_plane.errors import NotFound, NotImplementedYet
from services.control_plane.tokens import Scope

router = APIRouter(prefix="/memories", tags=["memories"])

UserQuery = Annotated[Id, Query(description="User whose memories these are.")]
_MOST = 10_000


class MemoryOut(BaseModel):
    id: str
    user_id: str
    topic: str
    text: str
    confidence: float | None = None
    source_run_id: str | None = None
    created_at: Any = None
    updated_at: Any = None
    version: int | None = None


def _store(ctx: ApiContext) -> Any:
    try:
        module = importlib.import_module("services.memory.store")
    except ImportError:
        module = None
    store_class = getattr(module, "MemoryStore", None)
    if store_class is None or not hasattr(store_class, "delete_memories"):
        raise NotImplementedYet("memories are owned by the memory service, whose store "
                                "functions are not available in this deployment")
    return store_class(ctx.db)


def _out(memory: Any) -> MemoryOut:
    return MemoryOut.model_validate(memory.model_dump(mode="json"), from_attributes=False)


@router.get("", response_model=Page[MemoryOut], summary="Memories of a user, newest first")
async def list_memories(user_id: UserQuery, ctx: ContextDep, caller: CallerDep,
                        limit: Limit = 50, cursor: Cursor = None) -> Page[MemoryOut]:
    start = decode_offset(cursor)
    memories = await _store(ctx).memories_of(user_id, limit=min(start + limit + 1, _MOST))
    page = memories[start:start + limit]
    more = len(memories) > start + limit
    return Page(items=[_out(m) for m in page],
                next_cursor=offset_cursor(start + limit) if more else None)


@router.delete("/{memory_id}", response_model=MemoryOut, summary="Delete a memory of a user")
async def delete_memory(memory_id: Annotated[Id, Path()], user_id: UserQuery, ctx: ContextDep,
                        caller: CallerDep) -> MemoryOut:
    async with ctx.audited(caller, Scope.OPERATOR, "memory.delete",
                           ("memory", memory_id)) as audit:
        audit.details = {"user_id": user_id}
        deleted = await _store(ctx).delete_memories(user_id, [memory_id])
        if not deleted:
            raise NotFound(f"user {user_id} has no memory {memory_id}")
        audit.before = deleted[0].model_dump(mode="json")
    return _out(deleted[0])
