"""How many database commands a run costs: per service (exact) and server-wide.

Per service: the counts ``dbprofile/sitecustomize`` keeps in each service
process, by command and collection. Server-wide: the server's own counters
(MongoDB ``opcounters``, FerretDB ``metrics.commands``), which include any
other work the server does for others.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient

__all__ = [
    "command_counts",
    "indexed_queries",
    "per_run",
    "plan_uses_index",
    "profile_per_run",
    "rate",
    "read_profile",
    "server_command_counts",
]

_COMMANDS = ("find", "insert", "update", "delete", "findAndModify", "getMore", "count", "aggregate")
_OPCOUNTERS = {"query": "find", "insert": "insert", "update": "update", "delete": "delete",
               "getmore": "getMore", "command": "command"}


def command_counts(status: Mapping[str, Any]) -> dict[str, int]:
    """Data commands served so far, by name, from a ``serverStatus`` document."""
    commands = (status.get("metrics") or {}).get("commands") or {}
    found = {name: int(commands[name].get("total", 0)) for name in _COMMANDS
             if isinstance(commands.get(name), Mapping)}
    if found:
        return found
    counters = status.get("opcounters") or {}
    return {_OPCOUNTERS[k]: int(v) for k, v in counters.items() if k in _OPCOUNTERS}


def per_run(before: Mapping[str, int], after: Mapping[str, int], runs: int) -> dict[str, float]:
    """Commands per run between two counts, by name and in ``total``."""
    if runs <= 0:
        return {}
    delta = {k: (after.get(k, 0) - before.get(k, 0)) / runs for k in after}
    delta = {k: round(v, 2) for k, v in delta.items() if v > 0}
    delta["total"] = round(sum(delta.values()), 2)
    return delta


async def server_command_counts(uri: str) -> dict[str, int]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, serverSelectionTimeoutMS=5000)
    try:
        return command_counts(await client.admin.command("serverStatus"))
    except Exception:  # diagnostic only: no counters, no figure
        return {}
    finally:
        await client.close()


_WRITES = ("insert", "update", "delete", "findAndModify")


def read_profile(folder: Path) -> dict[str, dict[str, int]]:
    """Command counts per service instance, as ``dbprofile/sitecustomize`` writes them."""
    found: dict[str, dict[str, int]] = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            found[path.stem] = {str(k): int(v) for k, v in data.items() if isinstance(v, int)}
    return found


def profile_per_run(before: Mapping[str, Mapping[str, int]], after: Mapping[str, Mapping[str, int]],
                    runs: int, *, idle_rate: Mapping[str, Mapping[str, float]] | None = None,
                    elapsed_s: float = 0.0) -> dict[str, Any]:
    """Commands per run for each instance and ``command:collection``, less what the
    instance does when idle (``idle_rate``: per second) over the same time."""
    if runs <= 0:
        return {}
    services: dict[str, Any] = {}
    total = writes = 0.0
    for instance, counts in after.items():
        start = before.get(instance, {})
        idle = (idle_rate or {}).get(instance, {})
        keys = {}
        for key, n in counts.items():
            value = (n - start.get(key, 0) - idle.get(key, 0.0) * elapsed_s) / runs
            if value >= 0.005:
                keys[key] = round(value, 2)
        if not keys:
            continue
        count = sum(keys.values())
        total += count
        writes += sum(v for k, v in keys.items() if k.split(":", 1)[0] in _WRITES)
        services[instance] = {"total": round(count, 2),
                              "commands": dict(sorted(keys.items(), key=lambda kv: -kv[1]))}
    return {"total": round(total, 2), "writes": round(writes, 2), "by_service": services}


def rate(before: Mapping[str, Mapping[str, int]], after: Mapping[str, Mapping[str, int]],
         seconds: float) -> dict[str, dict[str, float]]:
    """Commands per second of each instance between two profiles (its idle rate)."""
    if seconds <= 0:
        return {}
    return {inst: {k: (n - before.get(inst, {}).get(k, 0)) / seconds for k, n in counts.items()}
            for inst, counts in after.items()}


def plan_uses_index(explain: Mapping[str, Any]) -> bool | None:
    """Whether an ``explain`` of a find answers from an index (None: cannot tell).

    MongoDB names an ``IXSCAN`` stage; FerretDB on SQLite shows SQLite's plan,
    ``SCAN <table>`` for a full scan or ``SEARCH ... USING INDEX``.
    """
    text = json.dumps(explain.get("queryPlanner", explain), default=str)
    if "IXSCAN" in text or "USING INDEX" in text or "USING COVERING INDEX" in text:
        return True
    if "COLLSCAN" in text or "SCAN " in text:
        return False
    return None


async def indexed_queries(uri: str) -> bool | None:
    """Does the server use an index for an indexed field's equality filter? (Scratch data.)"""
    import uuid

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, serverSelectionTimeoutMS=5000)
    db = client[f"benchprobe_{uuid.uuid4().hex[:8]}"]
    try:
        await db["probe"].create_index([("k", 1)])
        await db["probe"].insert_many([{"k": i} for i in range(50)])
        explain = await db.command("explain", {"find": "probe", "filter": {"k": 7}})
        return plan_uses_index(explain)
    except Exception:  # descriptive only
        return None
    finally:
        try:
            await client.drop_database(db.name)
        finally:
            await client.close()
