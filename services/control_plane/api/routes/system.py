"""Who am I, and the global kill switch (admin)."""

from __future__ import annotations

from fastapi import APIRouter

from services.control_plane.api.context import CallerDep, ContextDep
from services.control_plane.api.models import KillSwitchBody, KillSwitchOut, WhoAmI
from services.control_plane.tokens import Scope

router = APIRouter(tags=["system"])


@router.get("/whoami", response_model=WhoAmI, summary="The calling token's id, name and scope")
async def whoami(caller: CallerDep) -> WhoAmI:
    return WhoAmI(token_id=caller.token_id, name=caller.name, scope=caller.scope.value)


@router.get("/kill-switch", response_model=KillSwitchOut, summary="Is the kill switch on?")
async def get_kill_switch(ctx: ContextDep, caller: CallerDep) -> KillSwitchOut:
    return KillSwitchOut.model_validate(await ctx.kill_switch.state())


@router.put("/kill-switch", response_model=KillSwitchOut,
            summary="Turn the kill switch on (refuse all new runs) or off")
async def set_kill_switch(body: KillSwitchBody, ctx: ContextDep,
                          caller: CallerDep) -> KillSwitchOut:
    action = "kill_switch.enable" if body.enabled else "kill_switch.disable"
    async with ctx.audited(caller, Scope.ADMIN, action, ("kill_switch", "global")) as audit:
        audit.before = await ctx.kill_switch.state()
        state = await ctx.kill_switch.set(body.enabled, reason=body.reason,
                                          changed_by=caller.token_id, now=ctx.clock())
        audit.after = state
    return KillSwitchOut.model_validate(state)
