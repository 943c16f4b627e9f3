"""A workflow run's graph: edges from the definition, each step's state from the run's view."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from schemas.workflows import WorkflowDefinition
from services.control_plane.workflow_graph import edges, graph
from shared.mongo import Doc

pytestmark = pytest.mark.unit

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def workflow(doc: str) -> WorkflowDefinition:
    raw: dict[str, Any] = yaml.safe_load(doc)
    return WorkflowDefinition.model_validate({"version": 1, **raw})


EVERYTHING = workflow("""
id: everything
steps:
  - {id: triage, type: router, agent: classifier, routes: {billing: pay, refund: pay, tech: fan},
     default: fan}
  - {id: pay, type: agent, agent: billing}
  - {id: fan, type: parallel, branches: [facts, polish], next: gate}
  - {id: facts, type: tool, tool: search, run_as: researcher}
  - {id: polish, type: loop, body: draft, until: {value: "{{steps.judge.output}}", equals: ok}}
  - {id: draft, type: agent, agent: writer, next: judge}
  - {id: judge, type: agent, agent: reviewer}
  - {id: gate, type: condition, check: {value: "{{input}}", regex: "x"}, then: sign-off,
     otherwise: done}
  - {id: sign-off, type: approval, next: done}
  - {id: done, type: agent, agent: publisher}
""")


def pairs(found: list[Doc]) -> set[tuple[str, str, str, str | None]]:
    return {(e["source"], e["target"], e["kind"], e["label"]) for e in found}


def test_edges_of_every_kind() -> None:
    assert pairs(edges(EVERYTHING)) == {
        ("triage", "pay", "route", "billing, refund"),
        ("triage", "fan", "route", "tech"),
        ("triage", "fan", "default", "default"),
        ("fan", "facts", "branch", None),
        ("fan", "polish", "branch", None),
        ("polish", "draft", "body", None),
        ("draft", "judge", "next", None),
        ("judge", "polish", "repeat", None),
        # the loop (no next of its own) ends its branch: the join comes from its body's end
        ("facts", "gate", "join", None),
        ("judge", "gate", "join", None),
        ("gate", "sign-off", "then", "then"),
        ("gate", "done", "otherwise", "else"),
        ("sign-off", "done", "next", None),
    }


def test_a_loop_going_on_leaves_from_the_end_of_its_body_and_a_condition_may_end_it() -> None:
    looped = workflow("""
id: looped
steps:
  - {id: refine, type: loop, body: draft, next: publish}
  - {id: draft, type: agent, agent: writer, next: check}
  - {id: check, type: condition, check: {value: "{{input}}", equals: "x"}, then: fix}
  - {id: fix, type: agent, agent: writer}
  - {id: publish, type: agent, agent: publisher}
""")
    assert pairs(edges(looped)) == {
        ("refine", "draft", "body", None), ("draft", "check", "next", None),
        ("check", "fix", "then", "then"),
        ("check", "publish", "exit", None), ("fix", "publish", "exit", None),
        ("check", "refine", "repeat", None), ("fix", "refine", "repeat", None),
    }


def record(step_id: str, state: str, **extra: Any) -> Doc:
    return {"id": step_id, "state": state, "started_at": T0, "ended_at": None,
            "duration_ms": None, "attempts": 1, **extra}


def states(drawn: dict[str, Any]) -> dict[str, str]:
    return {n["id"]: n["state"] for n in drawn["nodes"]}


def test_unstarted_steps_are_pending_unless_a_choice_or_a_failure_ruled_them_out() -> None:
    run = {"status": "running", "steps": [
        record("triage", "completed", next="fan", ended_at=T0 + timedelta(seconds=1),
               duration_ms=1000),
        record("fan", "running"),
        record("facts", "failed", error="no network"),
        record("polish", "running"),
        record("draft", "awaiting_approval"),
    ]}
    drawn = graph(EVERYTHING, run, T0 + timedelta(seconds=3))
    assert states(drawn) == {
        "triage": "completed", "pay": "skipped", "fan": "running", "facts": "failed",
        "polish": "running", "draft": "awaiting_approval", "judge": "pending",
        "gate": "pending", "sign-off": "pending", "done": "pending"}
    by_id = {n["id"]: n for n in drawn["nodes"]}
    assert by_id["triage"]["duration_ms"] == 1000 and by_id["triage"]["elapsed_ms"] is None
    assert by_id["fan"]["elapsed_ms"] == 3000 and by_id["fan"]["duration_ms"] is None
    assert (by_id["draft"]["parent"], by_id["polish"]["parent"], by_id["gate"]["parent"]) == (
        "polish", "fan", None)
    assert (by_id["draft"]["kind"], by_id["facts"]["error"]) == ("agent", "no network")
    assert drawn["start"] == "triage" and drawn["graph_known"] is True
    assert pairs(drawn["edges"]) == pairs(edges(EVERYTHING))


def test_a_condition_that_ended_its_scope_leaves_its_branches_skipped() -> None:
    run = {"status": "running", "steps": [
        record("triage", "completed", next="fan"), record("fan", "completed"),
        record("gate", "completed", next="done"),
    ]}
    assert states(graph(EVERYTHING, run, T0))["sign-off"] == "skipped"
    assert states(graph(EVERYTHING, run, T0))["done"] == "pending"


def test_after_the_end_nothing_is_pending() -> None:
    run = {"status": "completed", "steps": [record("triage", "completed", next="pay"),
                                           record("pay", "completed")]}
    assert set(states(graph(EVERYTHING, run, T0)).values()) == {"completed", "skipped"}


def test_without_its_definition_a_run_is_drawn_from_what_its_events_named() -> None:
    run = {"status": "running", "steps": [record("a", "completed", kind="agent"),
                                         record("b", "running", kind="tool")]}
    drawn = graph(None, run, T0)
    assert drawn["graph_known"] is False and drawn["edges"] == [] and drawn["start"] is None
    assert [(n["id"], n["kind"], n["state"]) for n in drawn["nodes"]] == [
        ("a", "agent", "completed"), ("b", "tool", "running")]
