"""Every audited route emits exactly one event: success, refused or failed."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from schemas.audit import AuditOutcome
from services.control_plane.api.context import Audited, safe_id
from services.control_plane.errors import Conflict, Forbidden
from services.control_plane.tokens import Principal, Scope

pytestmark = pytest.mark.unit


class Emitter:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    async def emit(self, action: str, target: tuple[str, str], **kw: Any) -> None:
        self.events.append({"action": action, "target": target, **kw})


def audited(scope: Scope, needed: Scope = Scope.OPERATOR) -> tuple[Audited, Emitter]:
    emitter = Emitter()
    ctx: Any = SimpleNamespace(emitter=emitter)
    return Audited(ctx, Principal("tok1", "n", scope), needed, "run.cancel", ("run", "r1")), \
        emitter


async def test_success_is_one_event_with_digests_inputs() -> None:
    audit, emitter = audited(Scope.ADMIN)
    async with audit as a:
        a.before, a.after = {"v": 1}, {"v": 2}
    (event,) = emitter.events
    assert event["outcome"] is AuditOutcome.SUCCESS
    assert (event["before"], event["after"], event["actor"].id) == ({"v": 1}, {"v": 2}, "tok1")


async def test_low_scope_is_refused_before_acting() -> None:
    audit, emitter = audited(Scope.VIEWER)
    acted = False
    with pytest.raises(Forbidden, match="below operator"):
        async with audit:
            acted = True
    assert not acted
    (event,) = emitter.events
    assert event["outcome"] is AuditOutcome.REFUSED


async def test_problem_is_refused_and_crash_is_failed() -> None:
    audit, emitter = audited(Scope.OPERATOR)
    with pytest.raises(Conflict):
        async with audit:
            raise Conflict("already ended")
    audit2, emitter2 = audited(Scope.OPERATOR)
    with pytest.raises(RuntimeError):
        async with audit2:
            raise RuntimeError("kafka down")
    assert [(e["outcome"], e["reason"]) for e in emitter.events + emitter2.events] == [
        (AuditOutcome.REFUSED, "already ended"),
        (AuditOutcome.FAILED, "RuntimeError: kafka down")]


@pytest.mark.parametrize(("raw", "safe"), [("r-1", "r-1"), ("a b", "invalid"), ("x" * 200,
                                                                               "invalid")])
def test_targets_from_paths_are_made_safe(raw: str, safe: str) -> None:
    assert safe_id(raw) == safe
