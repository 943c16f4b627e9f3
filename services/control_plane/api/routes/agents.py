"""Agents: the control plane publishes definitions and keeps a view of the topic.

Create, update, pause and resume each publish a new version of the
definition to the compacted agents topic (reasoning and tools follow it).
The view is written first with a condition on the version it was read at,
so two concurrent updates cannot both publish the same next version; if
publishing then fails the view is put back and the answer is 503-like.
"""

from __future__ import annotations

from datetime import UTC
from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import ValidationError

from schemas.agents import AgentDefinition
from schemas.base import AgentId
from schemas.topics import AGENTS
from services.control_plane.api.context import ApiContext, CallerDep, ContextDep
from services.control_plane.api.models import AgentOut, AgentSpec, PauseBody
from services.control_plane.api.pagination import Cursor, Limit, Page, paginate
from services.control_plane.errors import ApiProblem, Conflict, NotFound
from services.control_plane.store import AGENTS_VIEW
from services.control_plane.tokens import Scope

router = APIRouter(prefix="/agents", tags=["agents"])

AgentPath = Annotated[AgentId, Path(description="Agent id.")]


def _out(doc: dict[str, Any]) -> AgentOut:
    return AgentOut.model_validate({**doc, "id": doc["_id"]})


def _definition(fields: dict[str, Any]) -> AgentDefinition:
    try:
        return AgentDefinition.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ApiProblem(f"invalid agent: {first.get('msg')}") from exc


async def _publish(ctx: ApiContext, definition: AgentDefinition,
                   previous: dict[str, Any] | None) -> None:
    expected = previous["version"] if previous else None
    if not await ctx.agents.replace(definition, expected):
        raise Conflict(f"agent {definition.id} changed meanwhile (or already exists); "
                       "re-read it and try again")
    try:
        await ctx.publisher.publish(AGENTS, definition)
    except Exception:
        await ctx.agents.restore(previous, definition)
        raise


@router.get("", response_model=Page[AgentOut], summary="List agents")
async def list_agents(ctx: ContextDep, caller: CallerDep, limit: Limit = 50,
                      cursor: Cursor = None) -> Page[AgentOut]:
    docs, next_cursor = await paginate(ctx.db[AGENTS_VIEW], {}, sort_field="updated_at",
                                       limit=limit, cursor=cursor)
    return Page(items=[_out(d) for d in docs], next_cursor=next_cursor)


@router.get("/{agent_id}", response_model=AgentOut, summary="Get an agent")
async def get_agent(agent_id: AgentPath, ctx: ContextDep, caller: CallerDep) -> AgentOut:
    doc = await ctx.agents.get(agent_id)
    if doc is None:
        raise NotFound(f"no agent {agent_id}")
    return _out(doc)


@router.post("", status_code=201, response_model=AgentOut, summary="Create an agent")
async def create_agent(spec: AgentSpec, ctx: ContextDep, caller: CallerDep) -> AgentOut:
    fields = spec.model_dump()
    async with ctx.audited(caller, Scope.ADMIN, "agent.create", ("agent", fields["id"])) as audit:
        if await ctx.agents.get(fields["id"]) is not None:
            raise Conflict(f"agent {fields['id']} already exists; update it with PUT")
        definition = _definition({**fields, "version": 1, "updated_at": ctx.clock()})
        audit.after = definition.model_dump(mode="json")
        await _publish(ctx, definition, None)
    return _out(ctx.agents.document(definition))


@router.put("/{agent_id}", response_model=AgentOut, summary="Update an agent (new version)")
async def update_agent(agent_id: AgentPath, spec: AgentSpec,
                       ctx: ContextDep, caller: CallerDep) -> AgentOut:
    fields = spec.model_dump()
    async with ctx.audited(caller, Scope.ADMIN, "agent.update", ("agent", agent_id)) as audit:
        if fields["id"] != agent_id:
            raise ApiProblem(f"body id {fields['id']!r} differs from the path's {agent_id!r}")
        previous = await ctx.agents.get(agent_id)
        if previous is None:
            raise NotFound(f"no agent {agent_id}; create it with POST")
        audit.before = previous["definition"]
        definition = _definition({**fields, "version": previous["version"] + 1,
                                  "paused": previous["paused"], "updated_at": ctx.clock()})
        audit.after = definition.model_dump(mode="json")
        audit.details = {"version": definition.version}
        await _publish(ctx, definition, previous)
    return _out(ctx.agents.document(definition))


async def _set_paused(ctx: ApiContext, caller: CallerDep, agent_id: str, paused: bool,
                      reason: str | None) -> AgentOut:
    action = "agent.pause" if paused else "agent.resume"
    async with ctx.audited(caller, Scope.OPERATOR, action, ("agent", agent_id)) as audit:
        previous = await ctx.agents.get(agent_id)
        if previous is None:
            raise NotFound(f"no agent {agent_id}")
        audit.before = previous["definition"]
        if previous["paused"] == paused:
            definition = AgentDefinition.model_validate(previous["definition"])
        else:
            definition = _definition({**previous["definition"], "paused": paused,
                                      "version": previous["version"] + 1,
                                      "updated_at": ctx.clock().astimezone(UTC)})
            await _publish(ctx, definition, previous)
        audit.after = definition.model_dump(mode="json")
        audit.details = {"version": definition.version, **({"note": reason} if reason else {})}
    return _out(ctx.agents.document(definition))


@router.post("/{agent_id}/pause", response_model=AgentOut, summary="Pause an agent")
async def pause_agent(agent_id: AgentPath, ctx: ContextDep, caller: CallerDep,
                      body: PauseBody | None = None) -> AgentOut:
    return await _set_paused(ctx, caller, agent_id, True, body.reason if body else None)


@router.post("/{agent_id}/resume", response_model=AgentOut, summary="Resume a paused agent")
async def resume_agent(agent_id: AgentPath, ctx: ContextDep, caller: CallerDep,
                       body: PauseBody | None = None) -> AgentOut:
    return await _set_paused(ctx, caller, agent_id, False, body.reason if body else None)

