"""The checker's judgements on hand-made records: it must catch what it claims to.

(Marked ``unit``: no infrastructure, runs with ``make test``.)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.reliability.checker import (
    Verdict,
    normalise_reason,
    verify_order,
    verify_runs,
    verify_workflows,
)
from tests.reliability.kafka_io import Rec
from tests.reliability.load import RequestLog, Sent
from tests.reliability.side_effect_tools import read_effects

pytestmark = pytest.mark.unit


def _log(*runs: tuple[str, str, int], ordered: bool = True) -> RequestLog:
    log = RequestLog("t")
    for run_id, session, index in runs:
        log.sent.append(Sent(run_id, session, "plain", "echo", index, ordered, accepted=True,
                             attempts=1))
    return log


def _rec(msg_id: str, body: dict[str, object], offset: int, partition: int = 0) -> Rec:
    return Rec("t", partition, offset, b"k", {"ce_id": msg_id}, json.dumps(body).encode())


def _completed(msg_id: str, run_id: str, status: str, offset: int) -> Rec:
    return _rec(msg_id, {"run_id": run_id, "status": status, "error": None}, offset)


def _ended(msg_id: str, run_id: str, kind: str, offset: int) -> Rec:
    return _rec(msg_id, {"run_id": run_id, "kind": kind}, offset)


def test_one_ending_per_run_passes_and_copies_of_one_id_are_redeliveries() -> None:
    v = Verdict("t")
    verify_runs(v, _log(("r1", "s", 0)),
               [_completed("a", "r1", "completed", 0), _completed("a", "r1", "completed", 5)],
               [_ended("e", "r1", "run.completed", 0)])
    assert not v.violations
    assert v.figures["redelivered_copies"] == 1 and v.figures["completed"] == 1


def test_two_endings_a_lost_run_and_a_disagreeing_event_are_violations() -> None:
    v = Verdict("t")
    verify_runs(v, _log(("r1", "s", 0), ("r2", "s", 1), ("r3", "s", 2)),
               [_completed("a", "r1", "completed", 0), _completed("b", "r1", "failed", 1),
                _completed("c", "r3", "completed", 2)],
               [_ended("e1", "r1", "run.completed", 0), _ended("e3", "r3", "run.failed", 1)])
    assert v.figures["duplicate_endings"] == 1 and v.figures["lost"] == 1
    assert any("ended 2 times" in x for x in v.violations)
    assert any("never reached a final state" in x for x in v.violations)
    assert any("r3: terminal events ['failed'] disagree" in x for x in v.violations)


def _final(msg_id: str, workflow_run_id: str, kind: str, offset: int) -> Rec:
    return _rec(msg_id, {"workflow_run_id": workflow_run_id, "kind": kind, "seq": offset}, offset)


def _step(run_id: str, workflow_run_id: str, offset: int) -> Rec:
    return _rec(f"req-{run_id}", {"run_id": run_id, "metadata": {
        "workflow_run_id": workflow_run_id}}, offset)


def test_workflow_runs_and_their_step_runs_are_held_to_one_ending_and_one_effect() -> None:
    log = RequestLog("t")
    for wf in ("w1", "w2", "w3", "w4"):
        log.sent.append(Sent(wf, "s", "relay", "go", 0, False, accepted=True, attempts=1,
                             workflow=True))
    v = Verdict("t")
    lost = verify_workflows(
        v, log,
        [_final("f1", "w1", "workflow.completed", 0), _final("f1", "w1", "workflow.completed", 1),
         _final("f2", "w2", "workflow.completed", 2), _final("f2b", "w2", "workflow.failed", 3),
         _final("f4", "w4", "workflow.completed", 4)],
        [_step("wfs-1", "w1", 0), _step("wfs-4", "w4", 1), _step("other", "elsewhere", 2)],
        [_completed("c1", "wfs-1", "completed", 0)],
        [_ended("e1", "wfs-1", "run.completed", 0)],
        {"w1": 1, "w2": 1, "w4": 2})
    assert lost == ["wfs-4"]  # w4's step run never ended
    assert v.figures["workflows_completed"] == 3 and v.figures["workflows_lost"] == 1  # w3
    assert v.figures["workflow_duplicate_endings"] == 1  # w2; w1's copy of one id is fine
    assert v.figures["workflow_step_runs"] == 2
    assert any("w4 completed but its bump step happened 2 times" in x for x in v.violations)
    assert not any("w1" in x for x in v.violations)


def test_results_out_of_request_order_are_caught() -> None:
    log = _log(("r1", "s", 0), ("r2", "s", 1))
    v = Verdict("t")
    verify_order(v, log, [_completed("b", "r2", "completed", 3), _completed("a", "r1", "completed", 4)])
    assert v.figures["order_violations"] == 1
    ok = Verdict("t")
    verify_order(ok, log, [_completed("a", "r1", "completed", 3), _completed("b", "r2", "completed", 4),
                          _completed("a", "r1", "completed", 9)])  # a late copy changes nothing
    assert ok.figures["order_violations"] == 0


def test_effects_count_every_line_and_reasons_lose_their_ids(tmp_path: Path) -> None:
    path = tmp_path / "effects.log"
    path.write_text("k1\nk2\nk1\n")
    assert read_effects(path) == {"k1": 2, "k2": 1}
    assert normalise_reason("run run-x-1 failed after 3 attempt(s) in 0.4s") == \
        normalise_reason("run run-y-2 failed after 5 attempt(s) in 12.0s")


def test_every_generated_bad_record_is_refused_by_the_contract_decoder() -> None:
    """Scenario 6 expects a dead letter for each record: none may happen to be valid."""
    from schemas.codec import decode
    from schemas.envelope import Envelope
    from schemas.errors import ContractError
    from schemas.topics import topic
    from tests.reliability.bad_input import generate, valid_samples

    names = sorted(valid_samples())
    records = generate([topic(n) for n in names], per_kind=2)
    assert {r.topic for r in records} == set(names)
    accepted = []
    for record in records:
        try:
            decode(topic(record.topic).message, record.body, Envelope.from_headers(record.headers))
            accepted.append((record.topic, record.kind))
        except ContractError:
            pass
    assert not accepted
