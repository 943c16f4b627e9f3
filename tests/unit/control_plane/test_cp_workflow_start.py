"""Starting and steering workflow runs through the API, on fakes: what is validated, refused,
published and audited (the same routes on Kafka and FerretDB: test_control_plane_workflows)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from schemas.audit import AuditOutcome
from schemas.common import Actor, ActorKind
from schemas.envelope import deterministic_id
from schemas.topics import WORKFLOWS_COMMANDS, WORKFLOWS_REQUESTED
from schemas.workflows import (
    StepType,
    WorkflowCommand,
    WorkflowCommandKind,
    WorkflowEvent,
    WorkflowEventKind,
    WorkflowRequested,
)
from services.control_plane.api import create_api
from services.control_plane.api.context import Audited
from services.control_plane.api.models import WorkflowApprovalBody, WorkflowRunSubmit
from services.control_plane.tokens import Principal, Scope
from services.control_plane.workflow_view import fold, requested_run
from shared.workflow_messages import build_workflow_command, build_workflow_request

pytestmark = pytest.mark.unit

NOW = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
TOKENS = {"op": Principal("tok-op", "op", Scope.OPERATOR),
          "viewer": Principal("tok-v", "v", Scope.VIEWER)}
START = {"workflow_id": "board", "input": "the budget", "user_id": "u-1"}


class FakeWorkflows:
    def __init__(self) -> None:
        self.definitions = {"board@1", "board@2"}
        self.runs: dict[str, dict[str, Any]] = {}

    async def knows(self, ref: str) -> bool:
        return ref in self.definitions or any(d.startswith(f"{ref}@") for d in self.definitions)

    async def get(self, workflow_run_id: str) -> dict[str, Any] | None:
        return self.runs.get(workflow_run_id)

    async def requested(self, request: WorkflowRequested, *, submitted_by: str | None) -> None:
        self.runs.setdefault(request.workflow_run_id, requested_run(request, submitted_by))


class Fakes(SimpleNamespace):
    def audited(self, caller: Principal, needed: Scope, action: str,
                target: tuple[str, str]) -> Audited:
        return Audited(self, caller, needed, action, target)  # type: ignore[arg-type]


@pytest.fixture
def fakes() -> Fakes:
    audits: list[dict[str, Any]] = []
    published: list[tuple[Any, Any, dict[str, Any]]] = []
    switch = {"enabled": False, "reason": None}

    async def emit(action: str, target: tuple[str, str], **kw: Any) -> None:
        audits.append({"action": action, "target": target, **kw})

    async def publish(spec: Any, message: Any, **kw: Any) -> None:
        published.append((spec, message, kw))

    async def authenticate(token: str) -> Principal | None:
        return TOKENS.get(token)

    async def state() -> dict[str, Any]:
        return switch

    return Fakes(workflows=FakeWorkflows(), emitter=SimpleNamespace(emit=emit),
                 publisher=SimpleNamespace(publish=publish), clock=lambda: NOW,
                 tokens=SimpleNamespace(authenticate=authenticate),
                 kill_switch=SimpleNamespace(state=state), switch=switch, audits=audits,
                 published=published)


@pytest.fixture
async def http(fakes: Fakes) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_api(fakes), raise_app_exceptions=False)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://cp") as client:
        yield client


def auth(who: str = "op") -> dict[str, str]:
    return {"Authorization": f"Bearer {who}"}


def problem(answer: httpx.Response, status: int) -> str:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    detail: str = answer.json()["detail"]
    return detail


# -- the body, the messages ---------------------------------------------------------------

def test_a_version_pins_the_workflow_one_way_only() -> None:
    assert WorkflowRunSubmit.model_validate(START).ref() == "board"
    assert WorkflowRunSubmit.model_validate(START | {"version": 2}).ref() == "board@2"
    assert WorkflowRunSubmit.model_validate(START | {"workflow_id": "board@2"}).ref() == "board@2"
    with pytest.raises(ValidationError, match="not both"):
        WorkflowRunSubmit.model_validate(START | {"workflow_id": "board@2", "version": 2})


def test_cancel_takes_no_step_but_approvals_may() -> None:
    assert WorkflowApprovalBody(step="refine.2/check").step == "refine.2/check"
    with pytest.raises(ValidationError, match="step is only for approve and reject"):
        build_workflow_command("wr-1", WorkflowCommandKind.CANCEL,
                               Actor(kind=ActorKind.TOKEN, id="t"), step="check")


def test_builders_keep_the_idempotency_key_and_make_ids_of_one_shape() -> None:
    kept = build_workflow_request("board", "x", user="u", workflow_run_id="wr-mine",
                                  requested_at=NOW)
    assert (kept.workflow_run_id, kept.requested_at, kept.session_id) == ("wr-mine", NOW, None)
    fresh = build_workflow_request("board", "x", user="u", metadata={"k": "v"})
    assert fresh.workflow_run_id.startswith("wr-") and fresh.metadata == {"k": "v"}
    command = build_workflow_command("wr-1", WorkflowCommandKind.APPROVE,
                                     Actor(kind=ActorKind.TOKEN, id="t"), step="sign-off")
    assert command.command_id.startswith("cmd-") and command.step == "sign-off"


def test_a_requested_run_takes_the_version_and_state_from_its_first_event() -> None:
    doc = requested_run(build_workflow_request("board", "x", user="u", workflow_run_id="wr-1",
                                               requested_at=NOW), "tok-op")
    assert (doc["status"], doc["workflow_version"], doc["input"], doc["created_at"].microsecond) \
        == ("requested", None, "x", 123000)
    started = fold(doc, WorkflowEvent(workflow_run_id="wr-1", workflow_id="board@2", seq=0,
                                      kind=WorkflowEventKind.STARTED, at=NOW))
    waiting = fold(started, WorkflowEvent(
        workflow_run_id="wr-1", workflow_id="board@2", seq=1, step="sign-off",
        step_type=StepType.APPROVAL, kind=WorkflowEventKind.AWAITING_APPROVAL, at=NOW))
    assert (started["status"], started["workflow_version"], started["workflow_ref"]) == (
        "running", 2, "board@2")
    assert (waiting["status"], waiting["input"], waiting["submitted_by"]) == (
        "awaiting_approval", "x", "tok-op")
    assert fold(waiting, WorkflowEvent(workflow_run_id="wr-1", workflow_id="board@2", seq=0,
                                       kind=WorkflowEventKind.STARTED, at=NOW)) == waiting


# -- POST /workflows/runs ------------------------------------------------------------------

async def test_a_start_is_recorded_published_and_audited(
    http: httpx.AsyncClient, fakes: Fakes,
) -> None:
    answer = await http.post("/api/v1/workflows/runs", headers=auth(), json=START | {
        "version": 2, "workflow_run_id": "wr-1", "session_id": "s-1", "metadata": {"k": "v"}})
    assert answer.status_code == 202, answer.text
    assert answer.json() == {"workflow_run_id": "wr-1", "workflow_id": "board@2",
                             "status": "requested"}
    ((spec, request, kw),) = fakes.published
    assert spec is WORKFLOWS_REQUESTED and isinstance(request, WorkflowRequested)
    assert (request.workflow_id, request.input, request.user_id, request.session_id,
            request.metadata, request.requested_at) == ("board@2", "the budget", "u-1", "s-1",
                                                         {"k": "v"}, NOW)
    assert kw == {"correlation_id": "wr-1",
                  "message_id": deterministic_id("workflow-requested", "wr-1")}
    assert fakes.workflows.runs["wr-1"]["status"] == "requested"
    (audit,) = fakes.audits
    assert (audit["action"], audit["target"], audit["outcome"], audit["actor"].id) == (
        "workflow.submit", ("workflow_run", "wr-1"), AuditOutcome.SUCCESS, "tok-op")
    assert audit["details"] == {"workflow_id": "board@2", "user_id": "u-1"}

    again = await http.post("/api/v1/workflows/runs", headers=auth(),
                            json=START | {"workflow_run_id": "wr-1"})
    assert again.status_code == 202  # the same run: the workflows service ignores the repeat
    assert fakes.published[1][2] == kw


async def test_an_id_is_made_when_the_client_gives_none(
    http: httpx.AsyncClient, fakes: Fakes,
) -> None:
    answer = await http.post("/api/v1/workflows/runs", headers=auth(), json=START)
    run_id = answer.json()["workflow_run_id"]
    assert run_id.startswith("wr-") and fakes.published[0][1].workflow_run_id == run_id


@pytest.mark.parametrize(("body", "where"), [
    ({k: v for k, v in START.items() if k != "input"}, "body.input"),
    (START | {"input": ""}, "body.input"),
    (START | {"workflow_id": "no spaces"}, "body.workflow_id"),
    (START | {"workflow_id": "board@0"}, "body.workflow_id"),
    (START | {"version": 0}, "body.version"),
    (START | {"workflow_id": "board@1", "version": 1}, "body"),
    (START | {"user_id": "a b"}, "body.user_id"),
    (START | {"workflow_run_id": "x" * 129}, "body.workflow_run_id"),
    (START | {"reply_topic": "mine"}, "body.reply_topic"),
    (START | {"metadata": {"k": 1}}, "body.metadata.k"),
])
async def test_bad_starts_are_422_naming_the_field_and_change_nothing(
    http: httpx.AsyncClient, fakes: Fakes, body: dict[str, Any], where: str,
) -> None:
    detail = problem(await http.post("/api/v1/workflows/runs", headers=auth(), json=body), 422)
    assert detail.startswith(where)
    assert fakes.published == [] and fakes.audits == []


async def test_refused_starts_are_problems_and_audited_as_refused(
    http: httpx.AsyncClient, fakes: Fakes,
) -> None:
    url = "/api/v1/workflows/runs"
    problem(await http.post(url, json=START), 401)
    assert "below operator" in problem(await http.post(url, headers=auth("viewer"), json=START),
                                       403)
    assert "no workflow nope" in problem(await http.post(
        url, headers=auth(), json=START | {"workflow_id": "nope"}), 404)
    assert "no workflow board@3" in problem(await http.post(
        url, headers=auth(), json=START | {"version": 3}), 404)
    fakes.workflows.runs["wr-taken"] = {"workflow_id": "other", "status": "running"}
    assert "for workflow other" in problem(await http.post(
        url, headers=auth(), json=START | {"workflow_run_id": "wr-taken"}), 409)
    fakes.switch.update(enabled=True, reason="incident 7")
    assert "incident 7" in problem(await http.post(url, headers=auth(), json=START), 409)
    assert fakes.published == []
    assert [(a["action"], a["outcome"]) for a in fakes.audits] == [
        ("workflow.submit", AuditOutcome.REFUSED)] * 5


# -- commands ------------------------------------------------------------------------------

def waiting_run(fakes: Fakes, status: str = "awaiting_approval") -> None:
    fakes.workflows.runs["wr-1"] = {"workflow_id": "board", "status": status, "steps": [
        {"id": "sign-off", "path": "loop.2/sign-off", "state": "awaiting_approval"}]}


@pytest.mark.parametrize(("action", "body", "step"), [
    ("approve", {"reason": "ship it"}, None),
    ("approve", {"step": "sign-off"}, "sign-off"),
    ("reject", {"step": "loop.2/sign-off"}, "loop.2/sign-off"),
    ("cancel", None, None),
])
async def test_commands_are_published_with_the_token_as_actor_and_audited(
    http: httpx.AsyncClient, fakes: Fakes, action: str, body: dict[str, Any] | None,
    step: str | None,
) -> None:
    waiting_run(fakes)
    answer = await http.post(f"/api/v1/workflows/runs/wr-1/{action}", headers=auth(), json=body)
    assert answer.status_code == 202, answer.text
    ((spec, command, kw),) = fakes.published
    assert spec is WORKFLOWS_COMMANDS and isinstance(command, WorkflowCommand)
    assert (command.command.value, command.step, command.actor, command.issued_at) == (
        action, step, Actor(kind=ActorKind.TOKEN, id="tok-op"), NOW)
    assert command.reason == (body or {}).get("reason")
    assert answer.json() == {"command_id": command.command_id, "workflow_run_id": "wr-1",
                             "command": action}
    assert kw == {"correlation_id": "wr-1", "message_id": command.command_id}
    (audit,) = fakes.audits
    assert (audit["action"], audit["target"], audit["outcome"]) == (
        f"workflow.{action}", ("workflow_run", "wr-1"), AuditOutcome.SUCCESS)
    assert audit["details"]["command_id"] == command.command_id


async def test_refused_commands_say_why_and_publish_nothing(
    http: httpx.AsyncClient, fakes: Fakes,
) -> None:
    url = "/api/v1/workflows/runs/wr-1"
    assert "no workflow run wr-1" in problem(await http.post(f"{url}/approve", headers=auth()),
                                             404)
    waiting_run(fakes, status="running")
    fakes.workflows.runs["wr-1"]["steps"][0]["state"] = "running"
    assert "not waiting for an approval" in problem(
        await http.post(f"{url}/approve", headers=auth()), 409)
    waiting_run(fakes)
    assert "not waiting for approval step other" in problem(
        await http.post(f"{url}/reject", headers=auth(), json={"step": "other"}), 409)
    problem(await http.post(f"{url}/cancel", headers=auth("viewer")), 403)
    waiting_run(fakes, status="completed")
    assert "already ended (completed)" in problem(
        await http.post(f"{url}/cancel", headers=auth()), 409)
    assert fakes.published == []
    assert [(a["action"], a["outcome"]) for a in fakes.audits] == [
        ("workflow.approve", AuditOutcome.REFUSED), ("workflow.approve", AuditOutcome.REFUSED),
        ("workflow.reject", AuditOutcome.REFUSED), ("workflow.cancel", AuditOutcome.REFUSED),
        ("workflow.cancel", AuditOutcome.REFUSED)]


@pytest.mark.parametrize(("action", "body", "where"), [
    ("cancel", {"step": "sign-off"}, "body.step"),
    ("approve", {"reason": "x" * 1025}, "body.reason"),
    ("approve", {"call_id": "c1"}, "body.call_id"),
])
async def test_bad_command_bodies_are_422(
    http: httpx.AsyncClient, fakes: Fakes, action: str, body: dict[str, Any], where: str,
) -> None:
    waiting_run(fakes)
    detail = problem(await http.post(f"/api/v1/workflows/runs/wr-1/{action}", headers=auth(),
                                     json=body), 422)
    assert detail.startswith(where)
    assert fakes.published == []
