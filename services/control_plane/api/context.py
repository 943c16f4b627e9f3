"""What every route needs: stores, publisher, auditing, and who is calling.

:class:`Audited` is the one way a route changes anything. It checks the
caller's scope (a refusal is audited with outcome ``refused`` and answered
403), lets the route act, then emits exactly one audit event: ``success``,
``refused`` (the route raised a problem: 404, 409...) or ``failed``
(anything else). The actor is the token's id, never the token.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pymongo.asynchronous.database import AsyncDatabase

from schemas.audit import AuditOutcome
from schemas.base import ID_PATTERN
from schemas.common import Actor, ActorKind
from services.control_plane.control import KillSwitch
from services.control_plane.errors import ApiProblem, Forbidden, Unauthorized
from services.control_plane.tokens import Principal, Scope, TokenStore
from services.control_plane.views import AgentsView, RunsView
from services.control_plane.workflow_view import WorkflowsView
from shared.audit import AuditEmitter
from shared.kafka.publisher import Publisher
from shared.mongo import Doc

__all__ = ["ApiContext", "Audited", "CallerDep", "ContextDep", "get_context", "safe_id"]

_ID = re.compile(ID_PATTERN)


def safe_id(value: str) -> str:
    """An id fit for an audit target; anything else (from a hostile path) is named 'invalid'."""
    return value if _ID.fullmatch(value) else "invalid"


@dataclass
class ApiContext:
    db: AsyncDatabase[Doc]
    publisher: Publisher
    tokens: TokenStore
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    emitter: AuditEmitter = field(init=False)
    agents: AgentsView = field(init=False)
    runs: RunsView = field(init=False)
    workflows: WorkflowsView = field(init=False)
    kill_switch: KillSwitch = field(init=False)

    def __post_init__(self) -> None:
        self.emitter = AuditEmitter(self.publisher, "control-plane")
        self.agents = AgentsView(self.db)
        self.runs = RunsView(self.db)
        self.workflows = WorkflowsView(self.db)
        self.kill_switch = KillSwitch(self.db)

    def audited(self, caller: Principal, needed: Scope, action: str,
                target: tuple[str, str]) -> Audited:
        return Audited(self, caller, needed, action, (target[0], safe_id(target[1])))


def actor_of(caller: Principal) -> Actor:
    return Actor(kind=ActorKind.TOKEN, id=caller.token_id)


class Audited:
    def __init__(self, ctx: ApiContext, caller: Principal, needed: Scope, action: str,
                 target: tuple[str, str]) -> None:
        self._ctx, self._caller, self._needed = ctx, caller, needed
        self.action, self.target = action, target
        self.before: Any = None
        self.after: Any = None
        self.details: dict[str, Any] = {}

    async def _emit(self, outcome: AuditOutcome, reason: str | None) -> None:
        await self._ctx.emitter.emit(
            self.action, self.target, outcome=outcome, actor=actor_of(self._caller),
            reason=reason, before=self.before, after=self.after, details=self.details)

    async def __aenter__(self) -> Audited:
        if not self._caller.scope.allows(self._needed):
            reason = (f"token scope {self._caller.scope.value} is below "
                      f"{self._needed.value}, needed for {self.action}")
            await self._emit(AuditOutcome.REFUSED, reason)
            raise Forbidden(reason)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if exc is None:
            await self._emit(AuditOutcome.SUCCESS, None)
        elif isinstance(exc, ApiProblem):
            await self._emit(AuditOutcome.REFUSED, exc.detail)
        elif isinstance(exc, Exception):
            await self._emit(AuditOutcome.FAILED, f"{type(exc).__name__}: {exc}"[:500])


def get_context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ctx
    return ctx


_bearer = HTTPBearer(auto_error=False, scheme_name="token",
                     description="API token `ms_<id>_<secret>` (create with `mindstream tokens create`).")


async def get_caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None:
        raise Unauthorized("a bearer token is required (Authorization: Bearer ms_...)")
    principal = await get_context(request).tokens.authenticate(credentials.credentials)
    if principal is None:
        raise Unauthorized("the token is invalid or has been revoked")
    return principal


ContextDep = Annotated[ApiContext, Depends(get_context)]
CallerDep = Annotated[Principal, Depends(get_caller)]


def require(caller: Principal, needed: Scope) -> None:
    """For reads above viewer (not audited: nothing changes)."""
    if not caller.scope.allows(needed):
        raise Forbidden(f"token scope {caller.scope.value} is below {needed.value}")
