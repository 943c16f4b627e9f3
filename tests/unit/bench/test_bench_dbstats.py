"""Database command counts from serverStatus, for FerretDB and MongoDB alike."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mindstream.bench.dbstats import command_counts, per_run, profile_per_run, rate, read_profile

pytestmark = pytest.mark.unit


def test_ferretdb_metrics_commands() -> None:
    status = {"metrics": {"commands": {"find": {"total": 10, "failed": 1}, "insert": {"total": 4},
                                       "ping": {"total": 99}, "findAndModify": {"total": 2}}}}
    assert command_counts(status) == {"find": 10, "insert": 4, "findAndModify": 2}


def test_mongodb_opcounters() -> None:
    status = {"opcounters": {"query": 7, "insert": 3, "update": 2, "delete": 0, "getmore": 1,
                             "command": 50}}
    assert command_counts(status) == {"find": 7, "insert": 3, "update": 2, "delete": 0,
                                      "getMore": 1, "command": 50}
    assert command_counts({}) == {}


def test_per_run_divides_the_difference() -> None:
    assert per_run({"find": 10, "insert": 4}, {"find": 30, "insert": 4, "update": 5}, 10) == {
        "find": 2.0, "update": 0.5, "total": 2.5}
    assert per_run({}, {"find": 1}, 0) == {}


def test_profile_per_run_nets_out_idle_and_counts_writes(tmp_path: Path) -> None:
    (tmp_path / "reasoning-1.json").write_text(json.dumps({"find:runs": 40, "update:runs": 20}))
    (tmp_path / "memory-1.json").write_text(json.dumps({"find:sessions": 10}))
    (tmp_path / "broken.json").write_text("{not json")
    after = read_profile(tmp_path)
    assert set(after) == {"reasoning-1", "memory-1"}
    before = {"reasoning-1": {"find:runs": 10}, "memory-1": {"find:sessions": 10}}
    result = profile_per_run(before, after, 10, idle_rate={"reasoning-1": {"find:runs": 1.0}},
                             elapsed_s=10.0)
    assert result == {"total": 4.0, "writes": 2.0, "by_service": {
        "reasoning-1": {"total": 4.0, "commands": {"find:runs": 2.0, "update:runs": 2.0}}}}
    assert profile_per_run(before, after, 0) == {}
    assert read_profile(tmp_path / "missing") == {}


def test_rate_is_per_second() -> None:
    assert rate({"a": {"find:x": 2}}, {"a": {"find:x": 12}}, 5.0) == {"a": {"find:x": 2.0}}
    assert rate({}, {"a": {"find:x": 1}}, 0.0) == {}


def test_the_profiler_counts_commands_of_a_process(tmp_path: Path) -> None:
    """The sitecustomize hook, in a fresh interpreter: a command is counted and written."""
    from mindstream.bench.stack import DB_PROFILE_DIR

    script = (
        "import time\n"
        "from pymongo import monitoring\n"
        "listener = monitoring._LISTENERS.command_listeners[-1]\n"
        "class E:\n"
        "    command_name = 'find'\n"
        "    command = {'find': 'runs'}\n"
        "listener.started(E()); listener.started(E())\n"
        "time.sleep(0.15)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(DB_PROFILE_DIR),
           "MINDSTREAM_BENCH_DB_PROFILE": str(tmp_path), "MINDSTREAM_BENCH_INSTANCE": "svc-1",
           "MINDSTREAM_BENCH_DB_PROFILE_EVERY_S": "0.02"}
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=30)
    assert read_profile(tmp_path) == {"svc-1": {"find:runs": 2}}


def test_index_use_is_read_from_either_servers_plan() -> None:
    from mindstream.bench.dbstats import plan_uses_index

    ferret_scan = {"queryPlanner": {"Plan": ["id=2 parent=0 notused=0 detail=SCAN runs_1a32ed3b"]}}
    ferret_index = {"queryPlanner": {"Plan": ["detail=SEARCH t USING INDEX k_1 (k=?)"]}}
    mongo = {"queryPlanner": {"winningPlan": {"stage": "FETCH", "inputStage": {"stage": "IXSCAN"}}}}
    mongo_scan = {"queryPlanner": {"winningPlan": {"stage": "COLLSCAN"}}}
    assert plan_uses_index(ferret_scan) is False
    assert plan_uses_index(ferret_index) is True
    assert plan_uses_index(mongo) is True
    assert plan_uses_index(mongo_scan) is False
    assert plan_uses_index({}) is None


async def test_settled_profile_waits_for_counts_to_stop_growing(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from mindstream.bench import phases

    snapshots = iter([{"svc-1": {"find:x": n}} for n in (1, 10, 20, 30, 30, 99)])
    monkeypatch.setattr(phases, "read_profile", lambda _folder: next(snapshots))
    settled = await phases.settled_profile(tmp_path, {}, max_s=5.0, every_s=0.0)
    assert settled == {"svc-1": {"find:x": 30}}


async def test_settled_profile_gives_up_after_its_time(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    from mindstream.bench import phases

    counter = iter(range(0, 10**6, 100))
    monkeypatch.setattr(phases, "read_profile", lambda _folder: {"svc": {"find:x": next(counter)}})
    settled = await phases.settled_profile(tmp_path, {}, max_s=0.05, every_s=0.01)
    assert settled["svc"]["find:x"] > 0
