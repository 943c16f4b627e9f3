"""Canary rollouts of an agent: status with the gate's verdicts; start, promote, roll back.

Each change republishes the agent's newest definition (same version) with its
rollout set, cleared or rolled back; reasoning routes sessions by it. The gate
itself runs in :mod:`services.control_plane.canary`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from schemas.agents import AgentDefinition
from schemas.base import AgentId, ShortText
from services.control_plane.api.context import ApiContext, CallerDep, ContextDep
from services.control_plane.api.routes.agents import _publish
from services.control_plane.canary import CANARY_WINDOWS, promoted, rolled_back, started
from services.control_plane.errors import Conflict, NotFound
from services.control_plane.tokens import Principal, Scope

router = APIRouter(prefix="/agents", tags=["canary"])

AgentPath = Annotated[AgentId, Path(description="Agent id.")]


class _Out(BaseModel):
    model_config = ConfigDict(extra="ignore")


class CanaryWindow(_Out):
    window: int
    start: datetime
    end: datetime
    verdict: str
    reasons: list[str] = Field(default_factory=list)
    streak: int
    candidate: dict[str, Any]
    stable: dict[str, Any]


class CanaryOut(_Out):
    agent: str
    version: int = Field(description="Newest version (it carries the rollout).")
    rollout: dict[str, Any] | None = Field(default=None, description="None: no canary.")
    windows: list[CanaryWindow] = Field(default_factory=list, description="Newest first.")


class CanaryStart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    candidate_version: int = Field(ge=1, description="The newest version of the agent.")
    stable_version: int | None = Field(default=None, ge=1,
                                       description="Default: the version before the candidate.")
    share: float = Field(gt=0.0, lt=1.0, description="Share of new sessions, e.g. 0.1.")


class CanaryEnd(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: ShortText | None = Field(default=None, description="Why, for the audit trail.")


async def _newest(ctx: ApiContext, agent_id: str) -> tuple[dict[str, Any], AgentDefinition]:
    doc = await ctx.agents.get(agent_id)
    if doc is None:
        raise NotFound(f"no agent {agent_id}")
    return doc, AgentDefinition.model_validate(doc["definition"])


async def _status(ctx: ApiContext, agent_id: str) -> CanaryOut:
    _doc, newest = await _newest(ctx, agent_id)
    rollout = newest.rollout
    windows: list[Any] = []
    if rollout is not None:
        prefix = f"{agent_id}:{rollout.candidate_version}:{int(rollout.started_at.timestamp() * 1000)}"
        windows = await ctx.db[CANARY_WINDOWS].find({"canary": prefix}).sort(
            "window", -1).limit(50).to_list()
    return CanaryOut(agent=agent_id, version=newest.version,
                     rollout=rollout.model_dump(mode="json") if rollout else None,
                     windows=[CanaryWindow.model_validate(w) for w in windows])


@router.get("/{agent_id}/canary", response_model=CanaryOut,
            summary="The agent's canary rollout and the gate's verdicts per window")
async def get_canary(agent_id: AgentPath, ctx: ContextDep, caller: CallerDep) -> CanaryOut:
    return await _status(ctx, agent_id)


async def _change(ctx: ApiContext, caller: Principal, agent_id: str, action: str,
                  make: Any, reason: str | None = None) -> CanaryOut:
    async with ctx.audited(caller, Scope.OPERATOR, action, ("agent", agent_id)) as audit:
        doc, newest = await _newest(ctx, agent_id)
        try:
            changed = make(newest)
        except ValueError as exc:
            raise Conflict(str(exc)) from exc
        audit.before = doc["definition"]
        audit.after = changed.model_dump(mode="json")
        rollout = changed.rollout or newest.rollout
        assert rollout is not None
        audit.details = {"version": changed.version, "stable_version": rollout.stable_version,
                         "candidate_version": rollout.candidate_version,
                         "candidate_share": rollout.candidate_share,
                         **({"note": reason} if reason else {})}
        await _publish(ctx, changed, doc)
    return await _status(ctx, agent_id)


@router.post("/{agent_id}/canary", response_model=CanaryOut,
             summary="Start a canary: a share of new sessions goes to the candidate version")
async def start_canary(agent_id: AgentPath, body: CanaryStart, ctx: ContextDep,
                       caller: CallerDep) -> CanaryOut:
    stable = body.stable_version or body.candidate_version - 1
    return await _change(ctx, caller, agent_id, "agent.canary.started", lambda d: started(
        d, candidate=body.candidate_version, stable=stable, share=body.share, now=ctx.clock()))


@router.post("/{agent_id}/canary/promote", response_model=CanaryOut,
             summary="Promote the candidate: it serves every session")
async def promote_canary(agent_id: AgentPath, ctx: ContextDep, caller: CallerDep,
                         body: CanaryEnd | None = None) -> CanaryOut:
    reason = body.reason if body else None
    return await _change(ctx, caller, agent_id, "agent.canary.promoted",
                         lambda d: promoted(d, now=ctx.clock()), reason)


@router.post("/{agent_id}/canary/rollback", response_model=CanaryOut,
             summary="Roll back: every new session goes to the stable version")
async def rollback_canary(agent_id: AgentPath, ctx: ContextDep, caller: CallerDep,
                          body: CanaryEnd | None = None) -> CanaryOut:
    reason = body.reason if body else None
    return await _change(ctx, caller, agent_id, "agent.canary.rolled_back", lambda d: rolled_back(
        d, reason=reason or "rolled back by an operator", now=ctx.clock()), reason)
