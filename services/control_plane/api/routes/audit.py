"""The audit log: query it (time range, actor, action, target, outcome) and verify its chains."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from services.control_plane.api.context import CallerDep, ContextDep
from services.control_plane.api.models import AuditRecordOut, VerifyOut
from services.control_plane.api.pagination import Cursor, Limit, Page, paginate
from services.control_plane.audit_chain import verify
from services.control_plane.store import AUDIT_LOG

router = APIRouter(prefix="/audit", tags=["audit"])

Filter = Annotated[str | None, Query(max_length=128)]


def record_out(doc: dict[str, Any]) -> AuditRecordOut:
    return AuditRecordOut.model_validate({**doc, "event_id": doc["_id"]})


@router.get("", response_model=Page[AuditRecordOut], summary="Query the audit log, newest first")
async def query_audit(
    ctx: ContextDep, caller: CallerDep, limit: Limit = 50, cursor: Cursor = None,
    since: datetime | None = None, until: datetime | None = None,
    actor: Filter = None, action: Filter = None, target: Filter = None,
    outcome: Annotated[str | None, Query(pattern="^(success|refused|failed)$")] = None,
    chain: Filter = None,
) -> Page[AuditRecordOut]:
    query: dict[str, Any] = {k: v for k, v in {"actor_id": actor, "action": action,
                                               "target_id": target, "outcome": outcome,
                                               "chain": chain}.items() if v is not None}
    if since or until:
        query["time"] = {**({"$gte": since} if since else {}), **({"$lt": until} if until else {})}
    docs, next_cursor = await paginate(ctx.db[AUDIT_LOG], query, sort_field="time", limit=limit,
                                       cursor=cursor)
    return Page(items=[record_out(d) for d in docs], next_cursor=next_cursor)


@router.get("/verify", response_model=VerifyOut, summary="Verify the hash chains")
async def verify_audit(ctx: ContextDep, caller: CallerDep, chain: Filter = None) -> VerifyOut:
    return VerifyOut.model_validate((await verify(ctx.db, chain)).as_dict())
