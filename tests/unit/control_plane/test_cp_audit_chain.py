"""The chain checker names the first edited, deleted or moved record."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.audit import AuditEvent, AuditOutcome, AuditTarget
from schemas.common import Actor, ActorKind
from services.control_plane.audit_chain import (
    GENESIS_HASH,
    ChainChecker,
    canonical_json,
    check_chain,
    record_hash,
)

pytestmark = pytest.mark.unit

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def _event(i: int) -> dict[str, Any]:
    return AuditEvent(
        event_id=f"e{i}", time=T0 + timedelta(seconds=i), action="agent.update",
        actor=Actor(kind=ActorKind.TOKEN, id="tok"), target=AuditTarget(kind="agent", id="a"),
        outcome=AuditOutcome.SUCCESS, details={"n": i},
    ).model_dump(mode="json")


def chain(n: int) -> list[dict[str, Any]]:
    records, prev = [], GENESIS_HASH
    for i in range(1, n + 1):
        event = _event(i)
        digest = record_hash(prev, event)
        records.append({"_id": event["event_id"], "seq": i, "prev_hash": prev, "hash": digest,
                        "event": event, "chain": "global", "time": T0 + timedelta(seconds=i),
                        "actor_kind": "token", "actor_id": "tok", "action": "agent.update",
                        "target_kind": "agent", "target_id": "a", "outcome": "success"})
        prev = digest
    return records


def test_intact_chain_passes_with_head() -> None:
    assert check_chain("global", chain(5), head_seq=5) == (5, None)


def test_empty_chain_passes() -> None:
    assert check_chain("global", [], head_seq=None) == (0, None)


def test_edited_event_is_named() -> None:
    records = chain(5)
    records[2]["event"]["details"] = {"n": 99}
    _, broken = check_chain("global", records, 5)
    assert broken is not None
    assert (broken.seq, broken.event_id) == (3, "e3")
    assert "edited" in broken.problem


def test_edited_query_copy_is_named() -> None:
    records = chain(4)
    records[1]["action"] = "agent.create"
    _, broken = check_chain("global", records, 4)
    assert broken is not None
    assert broken.seq == 2
    assert "'action'" in broken.problem


def test_deleted_record_leaves_a_gap() -> None:
    records = chain(5)
    del records[1]
    _, broken = check_chain("global", records, 5)
    assert broken is not None
    assert (broken.seq, broken.event_id) == (2, "e3")
    assert "seq 2 missing" in broken.problem


def test_deleted_tail_is_seen_through_the_head() -> None:
    _, broken = check_chain("global", chain(5)[:3], head_seq=5)
    assert broken is not None
    assert broken.seq == 4
    assert "4-5 missing at the end" in broken.problem


def test_swapped_records_break_the_link() -> None:
    records = chain(5)
    third, fourth = copy.deepcopy(records[2]), copy.deepcopy(records[3])
    third["seq"], fourth["seq"] = 4, 3
    records[2], records[3] = fourth, third
    _, broken = check_chain("global", records, 5)
    assert broken is not None
    assert (broken.seq, broken.event_id) == (3, "e4")
    assert "link" in broken.problem


def test_rehashed_edit_still_breaks_the_next_link() -> None:
    """An attacker who recomputes the edited record's hash is caught one record later."""
    records = chain(4)
    records[1]["event"]["details"] = {"n": 42}
    records[1]["hash"] = record_hash(records[1]["prev_hash"], records[1]["event"])
    _, broken = check_chain("global", records, 4)
    assert broken is not None
    assert broken.seq == 3


def test_line_names_chain_seq_and_event() -> None:
    checker = ChainChecker("global")
    records = chain(2)
    records[0]["hash"] = "f" * 64
    broken = checker.feed(records[0])
    assert broken is not None
    assert broken.line().startswith("chain 'global' seq 1 (event e1): ")


def test_canonical_json_is_key_order_independent() -> None:
    assert canonical_json({"b": 1, "a": [1, {"d": 2, "c": "é"}]}) == \
        canonical_json({"a": [1, {"c": "é", "d": 2}], "b": 1})
