"""The workflow runs view folds a run's events into one document, whatever their order or repeats."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.workflows import StepType, WorkflowEvent, WorkflowEventKind
from services.control_plane.workflow_view import fold, split_path
from shared.mongo import Doc

pytestmark = pytest.mark.unit

T0 = datetime(2025, 1, 1, tzinfo=UTC)
K = WorkflowEventKind


def ev(seq: int, kind: WorkflowEventKind, ms: int, step: str | None = None,
       **extra: Any) -> WorkflowEvent:
    if kind in (K.STEP_FAILED, K.STEP_RETRYING, K.FAILED, K.CANCELLED):
        extra.setdefault("reason", "boom")
    return WorkflowEvent(workflow_run_id="wr-1", workflow_id="review@2", seq=seq, kind=kind,
                         at=T0 + timedelta(milliseconds=ms), step=step, **extra)


def fold_all(events: list[WorkflowEvent]) -> Doc:
    doc: Doc | None = None
    for event in events:
        doc = fold(doc, event)
    assert doc is not None
    return doc


def steps(doc: Doc) -> dict[str, Doc]:
    return {s["id"]: s for s in doc["steps"]}


AGENT, TOOL, APPROVAL = StepType.AGENT, StepType.TOOL, StepType.APPROVAL

# research (agent, retried once) -> calc (tool) -> sign-off (approval) -> publish (fails)
STORY = [
    ev(0, K.STARTED, 0, data={"steps": 4, "deadline": "2025-01-01T01:00:00+00:00"}),
    ev(1, K.STEP_STARTED, 10, "research", step_type=AGENT, run_id="wfs-a1", attempt=1),
    ev(2, K.STEP_RETRYING, 200, "research", step_type=AGENT, run_id="wfs-a1", attempt=1,
       reason="model timed out", data={"next_attempt": 2}),
    ev(3, K.STEP_COMPLETED, 450, "research", step_type=AGENT, run_id="wfs-a2", attempt=2,
       output="facts"),
    ev(4, K.STEP_STARTED, 460, "calc", step_type=TOOL, run_id="wfs-c1", attempt=1),
    ev(5, K.STEP_COMPLETED, 480, "calc", step_type=TOOL, run_id="wfs-c1", attempt=1,
       output='{"result": 42}'),
    ev(6, K.STEP_STARTED, 490, "sign-off", step_type=APPROVAL, attempt=1),
    ev(7, K.AWAITING_APPROVAL, 490, "sign-off", step_type=APPROVAL, attempt=1,
       data={"message": "Publish?"}),
    ev(8, K.RESUMED, 5490, "sign-off", step_type=APPROVAL, attempt=1,
       data={"approved_by": "user:op-1"}),
    ev(9, K.STEP_COMPLETED, 5490, "sign-off", step_type=APPROVAL, attempt=1, output="ok"),
    ev(10, K.STEP_STARTED, 5500, "publish", step_type=AGENT, run_id="wfs-p1", attempt=1),
    ev(11, K.STEP_FAILED, 5800, "publish", step_type=AGENT, run_id="wfs-p1", attempt=1,
       reason="model refused"),
    ev(12, K.FAILED, 5800, reason="step 'publish' failed: model refused",
       data={"duration_ms": 5805, "steps": 4}),
]


def test_a_run_folds_into_its_steps_with_state_duration_attempts_and_child_runs() -> None:
    doc = fold_all(STORY)
    assert (doc["_id"], doc["workflow_id"], doc["workflow_version"]) == ("wr-1", "review", 2)
    assert doc["status"] == "failed" and doc["error"] == "step 'publish' failed: model refused"
    assert doc["duration_ms"] == 5800 and doc["steps_total"] == 4
    assert doc["started_at"] == T0 and doc["ended_at"] == T0 + timedelta(milliseconds=5800)
    got = steps(doc)
    assert [s["id"] for s in doc["steps"]] == ["research", "calc", "sign-off", "publish"]
    research = got["research"]
    assert (research["state"], research["attempts"], research["run_id"], research["error"],
            research["duration_ms"]) == ("completed", 2, "wfs-a2", None, 440)
    assert (got["calc"]["kind"], got["calc"]["output"], got["calc"]["duration_ms"]) == (
        "tool", '{"result": 42}', 20)
    sign_off = got["sign-off"]
    assert (sign_off["state"], sign_off["message"], sign_off["approved_by"],
            sign_off["duration_ms"]) == ("completed", "Publish?", "user:op-1", 5000)
    assert (got["publish"]["state"], got["publish"]["error"]) == ("failed", "model refused")


@pytest.mark.parametrize(("upto", "state", "status"), [
    (1, "running", "running"),
    (2, "retrying", "running"),
    (3, "completed", "running"),
])
def test_open_states_as_they_happen(upto: int, state: str, status: str) -> None:
    doc = fold_all(STORY[: upto + 1])
    research = steps(doc)["research"]
    assert research["state"] == state and doc["status"] == status
    assert (research["duration_ms"] is None) == (state != "completed")
    if state == "retrying":
        assert research["error"] == "model timed out" and research["attempts"] == 2


def test_waiting_for_an_approval_is_the_run_status_until_resumed() -> None:
    waiting = fold_all(STORY[:8])
    assert waiting["status"] == "awaiting_approval"
    assert steps(waiting)["sign-off"]["state"] == "awaiting_approval"
    resumed = fold_all(STORY[:9])
    assert resumed["status"] == "running" and steps(resumed)["sign-off"]["state"] == "running"


def test_steps_open_when_the_run_ends_are_cancelled() -> None:
    events = [*STORY[:8], ev(8, K.CANCELLED, 900, reason="cancelled by user:op-1")]
    doc = fold_all(events)
    sign_off = steps(doc)["sign-off"]
    assert doc["status"] == "cancelled"
    assert (sign_off["state"], sign_off["error"], sign_off["duration_ms"]) == (
        "cancelled", "workflow ended", 410)
    assert steps(doc)["research"]["state"] == "completed"


def test_a_redelivered_event_changes_nothing() -> None:
    doc: Doc | None = None
    for event in STORY:
        doc = fold(doc, event)
        for earlier in STORY[: event.seq + 1]:
            assert fold(doc, earlier) == doc, f"replaying seq {earlier.seq}"


def test_any_order_with_repeats_converges_to_the_same_document() -> None:
    expected = fold_all(STORY)
    rng = random.Random(14)
    for _ in range(200):
        shuffled = [*STORY, *rng.sample(STORY, 4)]
        rng.shuffle(shuffled)
        assert fold_all(shuffled) == expected


def test_the_end_arriving_first_still_cancels_what_was_open_and_keeps_what_finished() -> None:
    events = [STORY[0], ev(1, K.STEP_STARTED, 10, "research", step_type=AGENT, run_id="wfs-a1"),
              ev(2, K.STEP_STARTED, 10, "calc", step_type=TOOL, run_id="wfs-c1"),
              ev(3, K.STEP_COMPLETED, 50, "calc", step_type=TOOL, output="1"),
              ev(4, K.CANCELLED, 60, reason="stop")]
    doc = fold_all(list(reversed(events)))
    assert doc == fold_all(events)
    assert {k: s["state"] for k, s in steps(doc).items()} == {"research": "cancelled",
                                                              "calc": "completed"}
    assert doc["status"] == "cancelled"


def test_a_loop_step_shows_its_newest_iteration_and_ignores_older_ones() -> None:
    events = [
        ev(0, K.STARTED, 0),
        ev(1, K.STEP_STARTED, 1, "polish", step_type=StepType.LOOP),
        ev(2, K.STEP_STARTED, 2, "polish.1/draft", step_type=AGENT, run_id="r1",
           data={"iteration": 1}),
        ev(3, K.STEP_COMPLETED, 30, "polish.1/draft", step_type=AGENT, run_id="r1", output="v1"),
        ev(4, K.STEP_STARTED, 40, "polish.2/draft", step_type=AGENT, run_id="r2",
           data={"iteration": 2}),
    ]
    doc = fold_all(events)
    draft = steps(doc)["draft"]
    assert (draft["path"], draft["iteration"], draft["state"], draft["run_id"]) == (
        "polish.2/draft", 2, "running", "r2")
    late = fold(doc, ev(5, K.STEP_FAILED, 50, "polish.1/draft", step_type=AGENT, run_id="r1"))
    assert steps(late)["draft"] == draft | {"first_seq": 2}
    assert fold_all([events[0], events[4], events[2], events[3], events[1]]) == doc
    done = fold(doc, ev(5, K.STEP_COMPLETED, 60, "polish", step_type=StepType.LOOP,
                        data={"iterations": 2, "condition_met": True}))
    assert steps(done)["polish"]["loop_iterations"] == 2


def test_a_router_records_the_step_it_chose() -> None:
    doc = fold_all([ev(0, K.STARTED, 0),
                    ev(1, K.STEP_STARTED, 1, "triage", step_type=StepType.ROUTER, run_id="r"),
                    ev(2, K.STEP_COMPLETED, 9, "triage", step_type=StepType.ROUTER,
                       output="billing", data={"next": "pay"})])
    assert steps(doc)["triage"]["next"] == "pay"


def test_times_are_kept_to_the_millisecond_like_mongodb() -> None:
    event = ev(0, K.STARTED, 0).model_copy(update={"at": T0 + timedelta(microseconds=1999)})
    doc = fold(None, event)
    assert doc["started_at"] == T0 + timedelta(milliseconds=1)


def test_an_event_naming_no_valid_step_updates_only_the_run() -> None:
    doc = fold_all([ev(0, K.STARTED, 0), ev(1, K.STEP_STARTED, 5, "Not A Step!")])
    assert doc["steps"] == [] and doc["last_seq"] == 1


def test_free_form_data_of_an_unexpected_shape_is_left_out() -> None:
    doc = fold_all([ev(0, K.STARTED, 0, data={"deadline": 5, "steps": "many"}),
                    ev(1, K.STEP_STARTED, 1, "ok", step_type=APPROVAL),
                    ev(2, K.AWAITING_APPROVAL, 1, "ok", data={"message": {"x": 1}}),
                    ev(3, K.RESUMED, 2, "ok", data={"approved_by": ["a"]}),
                    ev(4, K.STEP_COMPLETED, 3, "ok", data={"next": 7, "iterations": "2"})])
    assert (doc["deadline"], doc["steps_total"]) == (None, None)
    ok = steps(doc)["ok"]
    assert (ok["message"], ok["approved_by"], ok["next"], ok["loop_iterations"]) == (
        None, None, None, None)


def test_a_refused_run_has_no_version() -> None:
    refused = WorkflowEvent(workflow_run_id="wr-2", workflow_id="ghost", seq=0, kind=K.FAILED,
                            at=T0, reason="unknown workflow 'ghost'")
    doc = fold(None, refused)
    assert (doc["workflow_id"], doc["workflow_version"], doc["status"]) == ("ghost", None,
                                                                            "failed")


@pytest.mark.parametrize(("path", "expected"), [
    ("draft", ("draft", [])),
    ("outer.2/inner.13/draft", ("draft", [2, 13])),
    ("outer/draft", None),
    ("outer.x/draft", None),
    ("outer.1/Draft", None),
])
def test_split_path(path: str, expected: tuple[str, list[int]] | None) -> None:
    assert split_path(path) == expected
