"""The degraded-mode switch (admin): shed knowledge, learning and long answers, keep runs flowing."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from schemas.base import ShortText
from services.control_plane.api.context import CallerDep, ContextDep, actor_of
from services.control_plane.degradation import DegradationSwitch
from services.control_plane.tokens import Scope

router = APIRouter(tags=["system"])


class DegradationBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    degraded: bool = Field(description="On: shed the extras below; off: the normal mode.")
    disable_knowledge: bool = Field(default=True, description="No knowledge search or hits.")
    disable_memory_learning: bool = Field(default=True, description="No new memories learned.")
    max_tokens: int | None = Field(default=512, ge=1, le=200_000,
                                   description="Most tokens per model answer; unset: no cap.")
    reason: ShortText | None = Field(default=None, description="Why, for the audit trail.")


class DegradationOut(BaseModel):
    model_config = ConfigDict(extra="ignore")

    degraded: bool
    disable_knowledge: bool
    disable_memory_learning: bool
    max_tokens: int | None = None
    reason: str | None = None
    version: int = Field(description="Version of the published state (0: never set).")
    changed_by: str | None = None
    changed_at: datetime | None = None


@router.get("/degradation", response_model=DegradationOut,
            summary="The operating mode: normal, or degraded (and what it sheds)")
async def get_degradation(ctx: ContextDep, caller: CallerDep) -> DegradationOut:
    return DegradationOut.model_validate(await DegradationSwitch(ctx.db, ctx.publisher).state())


@router.put("/degradation", response_model=DegradationOut,
            summary="Enter or leave the degraded mode (every service follows it)")
async def set_degradation(body: DegradationBody, ctx: ContextDep,
                          caller: CallerDep) -> DegradationOut:
    action = "degradation.enable" if body.degraded else "degradation.disable"
    switch = DegradationSwitch(ctx.db, ctx.publisher)
    async with ctx.audited(caller, Scope.ADMIN, action, ("control", "global")) as audit:
        audit.before = await switch.state()
        state = await switch.set(
            degraded=body.degraded, disable_knowledge=body.disable_knowledge,
            disable_memory_learning=body.disable_memory_learning, max_tokens=body.max_tokens,
            reason=body.reason, actor=actor_of(caller), now=ctx.clock())
        audit.after = state
        audit.details = {"version": state["version"], "max_tokens": body.max_tokens,
                         "disable_knowledge": body.disable_knowledge,
                         "disable_memory_learning": body.disable_memory_learning,
                         **({"note": body.reason} if body.reason else {})}
    return DegradationOut.model_validate(state)
