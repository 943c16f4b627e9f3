"""API tokens (admin only): create (the token is in this answer only), list, revoke."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from services.control_plane.api.context import CallerDep, ContextDep, require
from services.control_plane.api.models import TokenCreate, TokenCreated, TokenOut
from services.control_plane.api.pagination import Page
from services.control_plane.errors import NotFound
from services.control_plane.tokens import Scope

router = APIRouter(prefix="/tokens", tags=["tokens"])

TokenPath = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$", description="Token id.")]


@router.get("", response_model=Page[TokenOut], summary="List tokens (never their secrets)")
async def list_tokens(ctx: ContextDep, caller: CallerDep) -> Page[TokenOut]:
    require(caller, Scope.ADMIN)
    return Page(items=[TokenOut.model_validate(t) for t in await ctx.tokens.list_tokens()])


@router.post("", status_code=201, response_model=TokenCreated, summary="Create a token")
async def create_token(body: TokenCreate, ctx: ContextDep, caller: CallerDep) -> TokenCreated:
    async with ctx.audited(caller, Scope.ADMIN, "token.create", ("token", "new")) as audit:
        record, token = await ctx.tokens.create(body.name, body.scope,
                                                created_by=caller.token_id)
        audit.target = ("token", record["id"])
        audit.details = {"name": body.name, "scope": body.scope.value}
    return TokenCreated.model_validate({**record, "token": token})


@router.delete("/{token_id}", response_model=TokenOut, summary="Revoke a token")
async def revoke_token(token_id: TokenPath, ctx: ContextDep, caller: CallerDep) -> TokenOut:
    async with ctx.audited(caller, Scope.ADMIN, "token.revoke", ("token", token_id)):
        record = await ctx.tokens.revoke(token_id, revoked_by=caller.token_id)
        if record is None:
            raise NotFound(f"no token {token_id}")
    return TokenOut.model_validate(record)
