"""Eval results (``eval_results``): written by ``mindstream eval run``, read by the API.

The control plane owns the collection; the CLI writes through this module so
the document shape lives in one place. Two kinds of documents:

- ``kind: "case"``: one per case of an eval run (``_id`` ``<eval_id>:<case>``),
  with the run id, the agent version that answered, pass/fail and reasons;
- ``kind: "run"``: one per eval run (``_id`` ``<eval_id>``) with its figures and
  whether every threshold held.

Writes are upserts by ``_id``, so re-recording a report changes nothing. The
trend (pass rate per agent version) is computed here from case documents,
because FerretDB's aggregation support is too thin to rely on: per suite and
version, the newest eval run that exercised the version counts.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from shared.mongo import Doc, IndexSpec, ensure_indexes

__all__ = ["EVAL_RESULTS", "INDEXES", "EvalCaseRecord", "EvalRunRecord", "EvalStore"]

EVAL_RESULTS = "eval_results"

INDEXES: dict[str, list[IndexSpec]] = {
    EVAL_RESULTS: [
        IndexSpec([("kind", 1), ("agent", 1), ("at", -1)], name="kind_agent_at"),
        IndexSpec([("eval_id", 1)], name="eval"),
    ],
}


@dataclass(frozen=True)
class EvalCaseRecord:
    case: str
    run_id: str
    passed: bool
    status: str
    agent_version: int | None
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    latency_ms: float = 0.0
    tokens: int = 0


@dataclass(frozen=True)
class EvalRunRecord:
    eval_id: str
    suite: str
    agent: str  # agent id, without version
    agent_ref: str  # as asked (may be pinned)
    agent_version: int | None  # pinned, or the one that answered; None when mixed
    at: datetime
    finished_at: datetime
    cases: int
    passed: int
    pass_rate: float
    p95_latency_ms: float | None
    tokens: int
    ok: bool
    threshold_failures: list[str] = field(default_factory=list)


class EvalStore:
    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self._db = db
        self._coll = db[EVAL_RESULTS]

    async def ensure_indexes(self) -> None:
        await ensure_indexes(self._db, INDEXES)

    async def record(self, run: EvalRunRecord, cases: list[EvalCaseRecord]) -> None:
        common = {"eval_id": run.eval_id, "suite": run.suite, "agent": run.agent, "at": run.at}
        for c in cases:
            await self._coll.replace_one(
                {"_id": f"{run.eval_id}:{c.case}"},
                {"kind": "case", **common, **asdict(c)}, upsert=True)
        await self._coll.replace_one({"_id": run.eval_id}, {"kind": "run", **asdict(run)},
                                     upsert=True)

    async def runs(self, agent: str | None = None, limit: int = 20) -> list[Doc]:
        query: Doc = {"kind": "run", **({"agent": agent} if agent else {})}
        return await self._coll.find(query, {"_id": 0}).sort("at", -1).limit(limit).to_list()

    async def run(self, eval_id: str) -> Doc | None:
        return await self._coll.find_one({"_id": eval_id, "kind": "run"}, {"_id": 0})

    async def cases(self, eval_id: str) -> list[Doc]:
        return await self._coll.find({"kind": "case", "eval_id": eval_id},
                                     {"_id": 0}).sort("case", 1).to_list()

    async def trend(self, agent: str | None = None, limit: int = 5000) -> list[dict[str, Any]]:
        """Per agent and suite: pass rate per version, from the newest eval of each version."""
        query: Doc = {"kind": "case", **({"agent": agent} if agent else {})}
        docs = await self._coll.find(query, {"_id": 0}).sort("at", -1).limit(limit).to_list()
        newest: dict[tuple[str, str, int], tuple[datetime, str]] = {}
        evals: dict[tuple[str, str, int], set[str]] = defaultdict(set)
        for d in docs:
            if d.get("agent_version") is None:
                continue
            key = (d["agent"], d["suite"], int(d["agent_version"]))
            evals[key].add(d["eval_id"])
            if key not in newest or d["at"] > newest[key][0]:
                newest[key] = (d["at"], d["eval_id"])
        counts: dict[tuple[str, str, int], list[int]] = defaultdict(lambda: [0, 0])
        for d in docs:
            if d.get("agent_version") is None:
                continue
            key = (d["agent"], d["suite"], int(d["agent_version"]))
            if newest[key][1] == d["eval_id"]:
                counts[key][0] += 1
                counts[key][1] += 1 if d.get("passed") else 0
        grouped: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for key, (total, passed) in counts.items():
            grouped[key[:2]].append({
                "version": key[2], "cases": total, "passed": passed,
                "pass_rate": passed / total if total else 0.0,
                "eval_id": newest[key][1], "at": newest[key][0], "evals": len(evals[key]),
            })
        return [{"agent": a, "suite": s, "versions": sorted(v, key=lambda x: x["version"])}
                for (a, s), v in sorted(grouped.items())]
