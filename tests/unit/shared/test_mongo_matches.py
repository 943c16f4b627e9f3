"""`shared.mongo.matches` must agree with MongoDB on the guards the services use,
since on FerretDB it decides conditional writes (`update_by_id`)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.mongo import matches

pytestmark = pytest.mark.unit

DOC = {"_id": "r1", "status": "running", "status_seq": 3, "run_ids": ["a", "b"],
       "at": datetime(2026, 1, 1, tzinfo=UTC), "nested": {"n": 2}, "none": None}


@pytest.mark.parametrize(("where", "expected"), [
    ({}, True),
    ({"status": "running"}, True),
    ({"status": "done"}, False),
    ({"status_seq": {"$lt": 4}}, True),
    ({"status_seq": {"$lt": 3}}, False),
    ({"status_seq": {"$lte": 3, "$gte": 3}}, True),
    ({"status_seq": {"$gt": 3}}, False),
    ({"status": {"$nin": ["completed", "failed"]}}, True),
    ({"status": {"$in": ["completed", "failed"]}}, False),
    ({"status_seq": {"$lt": 9}, "status": {"$nin": ["running"]}}, False),
    ({"run_ids": "a"}, True),                     # an array matches what it contains
    ({"run_ids": {"$ne": "a"}}, False),
    ({"run_ids": {"$ne": "z"}}, True),
    ({"missing": {"$ne": "x"}}, True),
    ({"missing": {"$lt": 1}}, False),              # absent never compares
    ({"missing": None}, True), ({"none": None}, True), ({"status": None}, False),
    ({"missing": {"$exists": False}}, True), ({"status": {"$exists": False}}, False),
    ({"nested.n": 2}, True), ({"nested.n": {"$gt": 2}}, False),
    ({"at": {"$lt": datetime(2027, 1, 1, tzinfo=UTC)}}, True),
    ({"status_seq": {"$lt": "text"}}, False),      # no ordering across types
    ({"$or": [{"status": "done"}, {"status_seq": 3}]}, True),
    ({"$or": [{"status": "done"}, {"status_seq": 4}]}, False),
])
def test_guards_match_as_mongodb_would(where: dict[str, object], expected: bool) -> None:
    assert matches(DOC, where) is expected


@pytest.mark.parametrize("where", [{"status": {"$regex": "r"}}, {"$and": []}])
def test_an_operator_it_does_not_know_is_refused_not_guessed(where: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="unsupported"):
        matches(DOC, where)
