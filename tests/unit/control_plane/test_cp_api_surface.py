"""The published OpenAPI document is current, and the API's pieces behave on their own."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mindstream.cli.audit_cmd import format_event, matcher
from schemas.audit import AuditEvent, AuditOutcome, AuditTarget
from schemas.common import Actor, ActorKind
from services.control_plane import openapi
from services.control_plane.api.models import AgentSpec
from services.control_plane.api.pagination import _decode, _encode
from services.control_plane.errors import ApiProblem

pytestmark = pytest.mark.unit


def test_openapi_json_has_not_drifted() -> None:
    assert openapi.SPEC_PATH.read_text() == openapi.render(), (
        "run: python -m services.control_plane.openapi --write")


def test_openapi_check_mode_reports_success(capsys: pytest.CaptureFixture[str]) -> None:
    assert openapi.main(["--check"]) == 0


def test_every_operation_is_secured_and_errors_are_problem_json() -> None:
    spec = openapi.spec()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            assert operation.get("security") == [{"token": []}], f"{method} {path}"
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    assert list(response["content"]) == ["application/problem+json"]


def test_agent_spec_has_the_contract_fields_but_not_the_owned_ones() -> None:
    fields = set(AgentSpec.model_fields)
    assert {"id", "instructions", "model", "tools"} <= fields
    assert not fields & {"version", "paused", "updated_at"}


@pytest.mark.parametrize("value", [datetime(2025, 1, 2, 3, 4, 5, 6000, tzinfo=UTC), 7, "x"])
def test_cursor_round_trips(value: object) -> None:
    assert _decode(_encode(value, "id-1")) == (value, "id-1")


@pytest.mark.parametrize("cursor", ["!!!", "e30", "WzFd", "bm90IGpzb24"])
def test_foreign_cursor_is_a_clear_400(cursor: str) -> None:
    with pytest.raises(ApiProblem, match="cursor"):
        _decode(cursor)


def test_audit_tail_formats_and_filters() -> None:
    event = AuditEvent(event_id="e1", time=datetime(2025, 1, 1, 12, tzinfo=UTC),
                       actor=Actor(kind=ActorKind.TOKEN, id="abc"), action="run.cancel",
                       target=AuditTarget(kind="run", id="r1"), outcome=AuditOutcome.REFUSED,
                       reason="scope viewer is below operator")
    line = format_event(event)
    assert line == ("2025-01-01 12:00:00  refused  token:abc  run.cancel  run:r1  "
                    "(scope viewer is below operator)")
    assert matcher("run.cancel", "abc", "r1")(event)
    assert not matcher("agent.update", None, None)(event)
    assert not matcher(None, "other", None)(event)
