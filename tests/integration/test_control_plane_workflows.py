"""A real workflow (memory, reasoning, workflows and the scripted model on Kafka and FerretDB)
seen through the control plane's API as its graph: each step's state and duration, the
choices made, a wait for an approval, then the end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.workflows import StepType, WorkflowCommandKind, WorkflowEvent, WorkflowEventKind
from services.control_plane.workflow_view import WorkflowsView, fold
from shared.settings import KafkaSettings, MongoSettings
from tests.integration.reasoning_harness import agent
from tests.integration.workflows_harness import workflow, workflows_stack
from tests.support.control_plane import Running, running_control_plane

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
