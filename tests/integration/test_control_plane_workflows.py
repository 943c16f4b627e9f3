"""A real workflow (memory, reasoning, workflows and the scripted model on Kafka and FerretDB)
seen through the control plane's API as its graph: each step's state and duration, the
choices made, a wait for an approval, then the end. Workflows started, approved and
rejected through the API, each change audited, and the API's refusals."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.codec import decode
from schemas.envelope import Envelope
from schemas.topics import WORKFLOWS_REQUESTED
from schemas.workflows import (
    StepType,
    WorkflowCommandKind,
    WorkflowEvent,
    WorkflowEventKind,
    WorkflowRequested,
)
from services.control_plane.workflow_view import WorkflowsView, fold
from shared.settings import KafkaSettings, MongoSettings
from tests.integration.reasoning_harness import agent
from tests.integration.workflows_harness import workflow, workflows_stack
from tests.support.control_plane import Running, by_action, running_control_plane
from tests.support.kafka import collect
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

AGENTS = [agent(f"id: {name}\ninstructions: You are the {name} agent.\nmodel: {{name: scripted}}")
          for name in ("researcher", "analyst", "critic", "classifier", "billing", "support",
                       "publisher")]

SCRIPT = r"""
rules:
  - match: {system: "the researcher agent"}
    text: "FACTS({{last_user}})"
  - match: {system: "the analyst agent"}
    text: "numbers"
  - match: {system: "the critic agent"}
    text: "doubts"
  - match: {system: "the classifier agent"}
    text: "tech"
  - match: {system: "the support agent"}
    text: "fixed"
  - match: {system: "the publisher agent"}
    text: "PUBLISHED {{last_user}}"
  - text: "unexpected"
"""

BOARD = workflow("""
id: board
steps:
  - {id: research, type: agent, agent: researcher, next: fan}
  - {id: fan, type: parallel, branches: [numbers, doubts], next: triage}
  - {id: numbers, type: agent, agent: analyst}
  - {id: doubts, type: agent, agent: critic}
  - {id: triage, type: router, agent: classifier, routes: {billing: pay, tech: fix}}
  - {id: pay, type: agent, agent: billing}
  - {id: fix, type: agent, agent: support, next: sign-off}
  - {id: sign-off, type: approval, message: "Publish {{steps.fix.output}}?", next: publish}
  - {id: publish, type: agent, agent: publisher, input: "{{steps.fix.output}}"}
""")

GATE = workflow("""
id: gate
steps:
  - {id: fix, type: agent, agent: support, next: sign-off}
  - {id: sign-off, type: approval, message: "Publish {{steps.fix.output}}?", next: publish}
  - {id: publish, type: agent, agent: publisher, input: "{{steps.fix.output}}"}
""")


def by_step(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["id"]: n for n in run["nodes"]}


async def test_a_running_workflow_is_shown_as_its_graph_with_states_and_durations(
    topics: KafkaSettings, mongo_settings: MongoSettings,
) -> None:
    async with workflows_stack(topics, mongo_settings, SCRIPT, AGENTS, [BOARD]) as ws, \
            running_control_plane(topics, mongo_settings) as cp:
        viewer = cp.auth((await cp.token("viewer"))[1])
        run_id = await ws.start("board", "the budget")
        await ws.wait(run_id, "workflow.awaiting_approval", "sign-off")

        def fetch() -> Any:
            return cp.http.get(f"/api/v1/workflows/runs/{run_id}", headers=viewer)

        waiting = await cp.eventually(fetch, lambda r: r.get("status") == "awaiting_approval")
        steps = by_step(waiting)
        assert list(steps) == ["research", "fan", "numbers", "doubts", "triage", "pay", "fix",
                               "sign-off", "publish"]
        assert {k: n["state"] for k, n in steps.items()} == {
            "research": "completed", "fan": "completed", "numbers": "completed",
            "doubts": "completed", "triage": "completed", "pay": "skipped", "fix": "completed",
            "sign-off": "awaiting_approval", "publish": "pending"}
        assert steps["sign-off"]["message"] == "Publish fixed?"
        assert steps["sign-off"]["elapsed_ms"] is not None
        assert steps["triage"]["next"] == "fix" and steps["triage"]["output"] == "tech"
        assert (steps["numbers"]["parent"], steps["fan"]["parent"]) == ("fan", None)
        for done in ("research", "numbers", "fix"):
            node = steps[done]
            assert node["kind"] == "agent" and node["attempts"] == 1
            assert node["run_id"] == ws.step_runs(run_id)[done]
            assert node["duration_ms"] is not None and node["duration_ms"] >= 0
        edges = {(e["source"], e["target"], e["kind"], e["label"]) for e in waiting["edges"]}
        assert edges == {
            ("research", "fan", "next", None), ("fan", "numbers", "branch", None),
            ("fan", "doubts", "branch", None), ("numbers", "triage", "join", None),
            ("doubts", "triage", "join", None), ("triage", "pay", "route", "billing"),
            ("triage", "fix", "route", "tech"), ("fix", "sign-off", "next", None),
            ("sign-off", "publish", "next", None)}
        assert (waiting["workflow_id"], waiting["workflow_version"], waiting["graph_known"],
                waiting["start"]) == ("board", 1, True, "research")

        await ws.command(run_id, WorkflowCommandKind.APPROVE, reason="ship it")
        assert (await ws.finished(run_id)).kind.value == "workflow.completed"
        done = await cp.eventually(fetch, lambda r: r.get("status") == "completed")
        steps = by_step(done)
        assert steps["publish"]["state"] == "completed"
        assert steps["sign-off"]["approved_by"] == "user:op-1"
        assert steps["pay"]["state"] == "skipped"
        assert done["output"] == "PUBLISHED fixed" and done["duration_ms"] > 0

        listed = (await cp.http.get("/api/v1/workflows/runs", headers=viewer,
                                    params={"workflow_id": "board", "status": "completed"})).json()
        assert [r["id"] for r in listed["items"]] == [run_id]
        assert listed["items"][0]["workflow_ref"] == "board@1"
        other = (await cp.http.get("/api/v1/workflows/runs", headers=viewer,
                                   params={"status": "running"})).json()
        assert other["items"] == []


async def test_unknown_runs_are_404_and_reads_need_a_token(
    topics: KafkaSettings, mongo_settings: MongoSettings,
) -> None:
    async with running_control_plane(topics, mongo_settings) as cp:
        await _problem(cp, "/api/v1/workflows/runs/wr-nope", 404, cp.auth())
        await _problem(cp, "/api/v1/workflows/runs", 401, {})
        await _problem(cp, "/api/v1/workflows/runs?limit=0", 422, cp.auth())


async def _definition_seen(cp: Running, ref: str) -> None:
    """The control plane reads the definitions topic on its own; a start needs the definition."""
    await eventually(lambda: cp.db.workflow_definitions_view.find_one({"_id": ref}),
                     what=f"definition {ref} seen")


async def test_a_workflow_started_and_approved_through_the_api_completes_and_is_audited(
    topics: KafkaSettings, mongo_settings: MongoSettings,
) -> None:
    async with workflows_stack(topics, mongo_settings, SCRIPT, AGENTS, [GATE]) as ws, \
            running_control_plane(topics, mongo_settings) as cp:
        op_id, op_token = await cp.token("operator", "op")
        op = cp.auth(op_token)
        await _definition_seen(cp, "gate@1")
        run_id = f"wr-api-{uuid.uuid4().hex[:8]}"
        start = {"workflow_id": "gate", "input": "the printer", "user_id": "u-7",
                 "workflow_run_id": run_id, "metadata": {"ticket": "T-1"}}
        started = await cp.http.post("/api/v1/workflows/runs", headers=op, json=start)
        assert started.status_code == 202, started.text
        assert started.json() == {"workflow_run_id": run_id, "workflow_id": "gate",
                                  "status": "requested"}
        seen = (await cp.http.get(f"/api/v1/workflows/runs/{run_id}", headers=op)).json()
        assert (seen["input"], seen["user_id"]) == ("the printer", "u-7")

        def fetch() -> Any:
            return cp.http.get(f"/api/v1/workflows/runs/{run_id}", headers=op)

        waiting = await cp.eventually(fetch, lambda r: r["status"] == "awaiting_approval", 60)
        assert by_step(waiting)["sign-off"]["message"] == "Publish fixed?"
        assert waiting["workflow_ref"] == "gate@1" and waiting["graph_known"]
        approved = await cp.http.post(f"/api/v1/workflows/runs/{run_id}/approve", headers=op,
                                      json={"step": "sign-off", "reason": "ship it"})
        assert approved.status_code == 202, approved.text
        assert (await ws.finished(run_id)).kind.value == "workflow.completed"
        done = await cp.eventually(fetch, lambda r: r["status"] == "completed")
        steps = by_step(done)
        assert {k: n["state"] for k, n in steps.items()} == {
            "fix": "completed", "sign-off": "completed", "publish": "completed"}
        assert steps["sign-off"]["approved_by"] == f"token:{op_id}"
        assert (done["output"], done["input"]) == ("PUBLISHED fixed", "the printer")

        # a repeat of the start is the same run: accepted, nothing new happens
        again = await cp.http.post("/api/v1/workflows/runs", headers=op, json=start)
        assert again.status_code == 202, again.text
        requests = [decode(WorkflowRequested, r.value, Envelope.from_headers(r.headers))
                    for r in await collect(topics.bootstrap_servers,
                                           WORKFLOWS_REQUESTED.physical(topics.topic_prefix), 2)]
        assert [(r.workflow_run_id, r.workflow_id, r.user_id, r.metadata) for r in requests] == [
            (run_id, "gate", "u-7", {"ticket": "T-1"})] * 2

        # a second run, rejected at its approval: the step fails and so does the run
        rejected_id = (await cp.http.post("/api/v1/workflows/runs", headers=op, json={
            "workflow_id": "gate", "version": 1, "input": "the fax", "user_id": "u-7",
        })).json()["workflow_run_id"]
        await ws.wait(rejected_id, "workflow.awaiting_approval", "sign-off")
        await cp.eventually(
            lambda: cp.http.get(f"/api/v1/workflows/runs/{rejected_id}", headers=op),
            lambda r: r["status"] == "awaiting_approval")
        rejected = await cp.http.post(f"/api/v1/workflows/runs/{rejected_id}/reject",
                                      headers=op, json={"reason": "not today"})
        assert rejected.status_code == 202, rejected.text
        ended = await ws.finished(rejected_id)
        assert ended.kind.value == "workflow.failed" and "not today" in (ended.reason or "")
        await cp.eventually(
            lambda: cp.http.get(f"/api/v1/workflows/runs/{rejected_id}", headers=op),
            lambda r: r["status"] == "failed")
        late = await _post_problem(cp, f"/api/v1/workflows/runs/{rejected_id}/cancel", {}, 409,
                                   op)
        assert "already ended (failed)" in late

        for action, target, count in (("workflow.submit", run_id, 2),
                                      ("workflow.approve", run_id, 1),
                                      ("workflow.submit", rejected_id, 1),
                                      ("workflow.reject", rejected_id, 1)):
            records = await cp.wait_audit(count, by_action(action, target_id=target))
            assert len(records) == count, records
            for record in records:
                assert record["event"]["outcome"] == "success"
                assert record["event"]["actor"] == {"kind": "token", "id": op_id}
                assert record["event"]["target"] == {"kind": "workflow_run", "id": target}
        (cancel,) = await cp.wait_audit(1, by_action("workflow.cancel", target_id=rejected_id))
        assert cancel["event"]["outcome"] == "refused"
        # the workflows service audits the approval it applied, with the same actor
        (applied,) = await cp.wait_audit(1, by_action("workflow.approved", target_id=run_id))
        assert applied["event"]["actor"] == {"kind": "token", "id": op_id}
        # by now the repeated start has long been read: it did not start the run again
        assert ws.kinds(run_id).count("workflow.started") == 1
        assert ws.kinds(run_id)[-1] == "workflow.completed"


async def test_starts_and_commands_need_an_operator_a_known_workflow_and_a_valid_body(
    topics: KafkaSettings, mongo_settings: MongoSettings,
) -> None:
    async with running_control_plane(topics, mongo_settings) as cp:
        viewer_id, viewer = await cp.token("viewer", "watcher")
        start = {"workflow_id": "gate", "input": "x", "user_id": "u-1", "workflow_run_id": "wr-v"}
        url = "/api/v1/workflows/runs"
        await _post_problem(cp, url, start, 401, {})
        refused = await _post_problem(cp, url, start, 403, cp.auth(viewer))
        assert "below operator" in refused
        unknown = await _post_problem(cp, url, start | {"workflow_run_id": "wr-u"}, 404,
                                      cp.auth())
        assert "no workflow gate" in unknown
        bad = await _post_problem(cp, url, start | {"input": ""}, 422, cp.auth())
        assert bad.startswith("body.input")
        await _post_problem(cp, f"{url}/wr-none/approve", {}, 404, cp.auth())
        await _post_problem(cp, f"{url}/wr-none/cancel", {"step": "s"}, 422, cp.auth())
        await _post_problem(cp, f"{url}/wr-none/reject", {}, 403, cp.auth(viewer))

        (r403,) = await cp.wait_audit(1, by_action("workflow.submit", target_id="wr-v"))
        assert (r403["event"]["outcome"], r403["event"]["actor"]["id"]) == ("refused", viewer_id)
        (r404,) = await cp.wait_audit(1, by_action("workflow.submit", target_id="wr-u"))
        assert r404["event"]["outcome"] == "refused" and "no workflow" in r404["event"]["reason"]
        for action, actor in (("workflow.approve", "bootstrap"), ("workflow.reject", viewer_id)):
            (record,) = await cp.wait_audit(1, by_action(action, target_id="wr-none"))
            assert (record["event"]["outcome"], record["event"]["actor"]["id"]) == (
                "refused", actor)
        assert await cp.audit_records(by_action("workflow.cancel")) == []  # 422: never reached
        assert await cp.db.workflow_runs_view.count_documents({}) == 0


async def _post_problem(cp: Running, url: str, body: dict[str, Any], status: int,
                        headers: dict[str, str]) -> str:
    answer = await cp.http.post(url, json=body, headers=headers)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    detail: str = answer.json()["detail"]
    assert detail
    return detail


async def _problem(cp: Running, url: str, status: int, headers: dict[str, str]) -> None:
    answer = await cp.http.get(url, headers=headers)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["detail"]


async def test_the_view_in_mongodb_converges_out_of_order_and_skips_redeliveries(
    mongo_db: Any,
) -> None:
    t0, k = datetime.now(UTC), WorkflowEventKind
    events = [WorkflowEvent(workflow_run_id="wr-m", workflow_id="board@1", seq=seq, kind=kind,
                            at=t0 + timedelta(microseconds=1234 + 250_000 * seq), step=step,
                            step_type=StepType.AGENT if step else None, run_id="wfs-1",
                            reason="x" if kind is k.STEP_RETRYING else None)
              for seq, (kind, step) in enumerate([
                  (k.STARTED, None), (k.STEP_STARTED, "research"), (k.STEP_RETRYING, "research"),
                  (k.STEP_COMPLETED, "research"), (k.COMPLETED, None)])]
    view = WorkflowsView(mongo_db)
    for event in [events[3], events[0], events[4], events[1], events[2]]:
        await view.event(event)
    stored = await view.get("wr-m")
    assert stored is not None
    for event in events:  # redelivered: every one folds to what is stored, nothing is written
        await view.event(event)
    again = await view.get("wr-m")
    assert again == stored
    expected: Any = None
    for event in events:
        expected = fold(expected, event)
    assert {**stored, "version": 0} == expected
    assert stored["status"] == "completed" and stored["steps"][0]["state"] == "completed"
