"""After a scenario: did the system keep every promise it makes about data?

Read back from Kafka and MongoDB (never from the services' own answers):

* every accepted run reached a final state exactly once: one RunCompleted
  message id per run id (copies of the same id are redeliveries and fine; two
  ids are two endings) and one terminal run event agreeing with it;
* no tool side effect happened twice (the ``bump`` effects file, joined with
  the tools service's ledger ``tool_calls``/``tool_call_results``), and every
  call the ledger started was finished;
* per-session order held for sessions sent back to back;
* every audit event published is in the hash-chained ``audit_log`` and the
  chains verify (``mindstream audit verify``'s logic);
* nothing is in a dead-letter topic that should not be.

Each check adds figures (for the results table) and violations (the test
fails on any). :meth:`Checker.wait_idle` first waits until every consumer
group of the stack has caught up, so the checks see the settled state.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition
from pymongo import AsyncMongoClient

from schemas.audit import AuditEvent
from schemas.codec import decode
from schemas.envelope import Envelope
from schemas.errors import ContractError
from schemas.knowledge import KnowledgeDocument
from schemas.topics import (
    AUDIT,
    RUNS_COMPLETED,
    RUNS_EVENTS,
    RUNS_READY,
    RUNS_REQUESTED,
    TOPICS,
    WORKFLOWS_EVENTS,
)
from services.control_plane.audit_chain import verify
from services.memory.chunking import plan_ingest
from services.memory.settings import MemoryServiceSettings
from tests.reliability.kafka_io import Rec, end_offsets, group_lag, read_topic
from tests.reliability.load import RequestLog
from tests.reliability.side_effect_tools import read_effects
from tests.reliability.stack import Stack

__all__ = ["Checker", "Endings", "Verdict", "normalise_reason", "verify_endings", "verify_order",
           "verify_runs", "verify_workflows"]

_TERMINAL = {"run.completed": "completed", "run.failed": "failed", "run.cancelled": "cancelled"}
_WORKFLOW_FINAL = {"workflow.completed": "completed", "workflow.failed": "failed",
                   "workflow.cancelled": "cancelled"}
_VARIABLE = re.compile(
    r"run-[\w-]+|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f-]{19,}|\d{4}-\d\d-\d\dT[\d:.+]+|\d+(\.\d+)?")


def normalise_reason(reason: str | None) -> str:
    """Failure reasons without ids, times and numbers, so equal causes count together."""
    return _VARIABLE.sub("#", reason or "no reason")[:120]


@dataclass
class Verdict:
    scenario: str
    figures: dict[str, Any] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        if len(self.violations) < 200:
            self.violations.append(message)

    def summary(self) -> str:
        more = "" if len(self.violations) <= 20 else f"\n... and {len(self.violations) - 20} more"
        return "\n".join(self.violations[:20]) + more


def _valid_audit(rec: Rec) -> bool:
    """Only a valid event must be in the log; an invalid one must be dead-lettered instead."""
    try:
        decode(AuditEvent, rec.value, Envelope.from_headers(rec.headers))
    except ContractError:
        return False
    return True


class Checker:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.bootstrap = stack.spec.kafka_bootstrap
        self.prefix = stack.spec.prefix
        self._mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            stack.spec.mongo_uri, tz_aware=True, serverSelectionTimeoutMS=10_000)
        self.db = self._mongo[stack.spec.database]

    async def close(self) -> None:
        await self._mongo.close()

    def topic(self, name: str) -> str:
        return self.prefix + name

    # -- settling ---------------------------------------------------------------------------

    async def wait_idle(self, timeout_s: float = 120.0,
                        extra_groups: Mapping[str, Iterable[str]] | None = None) -> float:
        """Wait until every consumer group has committed every record; returns seconds."""
        started = time.monotonic()
        lag: dict[str, int] = {}
        history: list[tuple[float, int]] = []
        while time.monotonic() - started < timeout_s:
            try:
                lag = await group_lag(self.bootstrap, self.prefix, extra_groups)
            except Exception as exc:  # a broker coming back answers late
                lag = {f"lag unknown: {type(exc).__name__}": 1}
            if not lag:
                return time.monotonic() - started
            history.append((round(time.monotonic() - started), sum(lag.values())))
            await asyncio.sleep(0.5)
        trend = history[:: max(1, len(history) // 12)]
        raise AssertionError(f"consumers did not catch up within {timeout_s:.0f}s: {lag}\n"
                             f"total lag over time (s, records): {trend}\n"
                             + self.stack.log_tails(8))

    async def dlq_offsets(self) -> dict[TopicPartition, int]:
        return await end_offsets(self.bootstrap, [self.topic(t.dlq) for t in TOPICS])

    # -- the checks -------------------------------------------------------------------------

    async def check(self, log: RequestLog, *, dlq_since: Mapping[TopicPartition, int],
                    dlq_expected: Callable[[Rec], bool] = lambda _r: False,
                    check_order: bool = True) -> Verdict:
        verdict = Verdict(log.scenario)
        completed = await read_topic(self.bootstrap, self.topic(RUNS_COMPLETED.name))
        events = await read_topic(self.bootstrap, self.topic(RUNS_EVENTS.name))
        lost = verify_runs(verdict, log, completed, events)
        requested: list[Rec] = []
        if log.workflow_run_ids():
            requested = await read_topic(self.bootstrap, self.topic(RUNS_REQUESTED.name))
            lost += verify_workflows(
                verdict, log, await read_topic(self.bootstrap, self.topic(WORKFLOWS_EVENTS.name)),
                requested, completed, events, read_effects(self.stack.effects_path))
        if lost:
            await self.trace_lost(verdict, lost, events, requested or None)
        if check_order:
            verify_order(verdict, log, completed)
        await self.check_tools(verdict, log)
        if log.documents:
            await self.check_knowledge(verdict, log.documents)
        await self.check_audit(verdict)
        await self.check_dlq(verdict, dlq_since, dlq_expected)
        return verdict

    async def trace_lost(self, verdict: Verdict, lost: list[str], events: list[Rec],
                         requested: list[Rec] | None = None) -> None:
        """Where each lost run stopped: the topics it reached and memory's queue slot for
        it and the slot ahead of it, so a failure says which service dropped it."""
        if requested is None:
            requested = await read_topic(self.bootstrap, self.topic(RUNS_REQUESTED.name))
        ready = await read_topic(self.bootstrap, self.topic(RUNS_READY.name))
        for run_id in lost[:5]:
            seen = [f"{r.topic.removeprefix(self.prefix)}[{r.partition}]@{r.offset}"
                    f"{':' + str(r.body().get('kind')) if r.body().get('kind') else ''}"
                    for r in (*requested, *ready, *events) if r.body().get("run_id") == run_id]
            marker = await self.db.run_queue_runs.find_one({"_id": run_id})
            slots = []
            if marker is not None:
                session, _, pos = str(marker["slot"]).rpartition("#")
                for p in (int(pos) - 1, int(pos)):
                    doc = await self.db.run_queue.find_one({"_id": f"{session}#{p}"})
                    slots.append(f"{session}#{p}=" + (
                        "absent" if doc is None else f"{doc['run_id']}:{doc['state']}"))
            verdict.fail(f"lost run {run_id}: seen on {seen or 'no topic'}; "
                         f"queue {slots or 'no slot'}")

    async def check_tools(self, verdict: Verdict, log: RequestLog) -> None:
        effects = read_effects(self.stack.effects_path)
        doubled = {k: n for k, n in effects.items() if n > 1}
        for key, n in sorted(doubled.items()):
            verdict.fail(f"side effect {key!r} happened {n} times")
        runs = log.run_ids()
        calls = [d async for d in self.db.tool_calls.find(
            {"run_id": {"$in": sorted(runs)}}, {"_id": 1, "run_id": 1, "tool": 1})] if runs else []
        ids = [c["_id"] for c in calls]
        results = {d["_id"]: d async for d in self.db.tool_call_results.find(
            {"_id": {"$in": ids}}, {"_id": 1, "outcome": 1, "result.ok": 1})} if ids else {}
        interrupted = 0
        for call in calls:
            done = results.get(call["_id"])
            if done is None:
                verdict.fail(f"tool call {call['_id']} ({call['tool']}) started but never finished")
                continue
            if call["tool"] != "bump":
                continue
            ok = bool((done.get("result") or {}).get("ok"))
            count = effects.get(call["run_id"], 0)
            interrupted += done.get("outcome") == "interrupted"
            if ok and count != 1:
                verdict.fail(f"bump of {call['run_id']} answered ok but happened {count} times")
            if not ok and count and done.get("outcome") != "interrupted":
                verdict.fail(f"bump of {call['run_id']} answered {done.get('outcome')} "
                             "but its side effect happened")
        mine = {k: n for k, n in effects.items() if k in runs}
        verdict.figures.update({
            "tool_calls": len(calls), "side_effects": sum(mine.values()),
            "double_side_effects": len(doubled), "interrupted_calls": interrupted,
        })

    async def check_knowledge(self, verdict: Verdict,
                              documents: Mapping[str, KnowledgeDocument]) -> None:
        """Memory holds exactly the last version of every document published: its hash
        and exactly its chunks (none missing, none left of an older version), or, for a
        deleted one, no chunks."""
        settings = MemoryServiceSettings()
        ids = sorted(documents)
        stored = {d["_id"]: d async for d in self.db.knowledge_documents.find(
            {"_id": {"$in": ids}}, {"text": 0})}
        chunks: dict[str, set[str]] = {}
        async for c in self.db.knowledge_chunks.find({"document_id": {"$in": ids}},
                                                     {"_id": 1, "document_id": 1}):
            chunks.setdefault(c["document_id"], set()).add(c["_id"])
        wrong = 0
        for doc_id in ids:
            last, doc, have = documents[doc_id], stored.get(doc_id), chunks.get(doc_id, set())
            if last.deleted:
                want: set[str] = set()
                ok = doc is not None and doc.get("deleted") is True
            else:
                plan = plan_ingest(doc_id, last.text, existing_hash=None,
                                   max_tokens=settings.chunk_max_tokens,
                                   overlap_tokens=settings.chunk_overlap_tokens)
                want = {c.id for c in plan.chunks}
                ok = doc is not None and doc.get("doc_hash") == plan.doc_hash \
                    and not doc.get("deleted")
            if not ok or have != want:
                wrong += 1
                verdict.fail(f"knowledge document {doc_id}: stored "
                             f"{'nothing' if doc is None else doc.get('doc_hash')} "
                             f"(deleted={doc.get('deleted') if doc else None}), "
                             f"{len(want - have)} chunks missing, {len(have - want)} extra; "
                             f"last published {'deleted' if last.deleted else 'a new version'}")
        verdict.figures.update({"knowledge_documents": len(ids),
                                "knowledge_chunks": sum(len(c) for c in chunks.values()),
                                "knowledge_wrong": wrong})

    async def check_audit(self, verdict: Verdict) -> None:
        records = await read_topic(self.bootstrap, self.topic(AUDIT.name))
        published = {r.id for r in records if r.id and _valid_audit(r)}
        stored = {d["_id"] async for d in self.db.audit_log.find({}, {"_id": 1})}
        missing = published - stored
        for event_id in sorted(missing)[:10]:
            verdict.fail(f"audit event {event_id} was published but is not in the audit log")
        report = await verify(self.db)
        if not report.ok:
            verdict.fail(f"audit chain broken: {report.first_broken}")
        verdict.figures.update({"audit_records": report.checked, "audit_missing": len(missing),
                                "audit_verified": report.ok})

    async def check_dlq(self, verdict: Verdict, since: Mapping[TopicPartition, int],
                        expected: Callable[[Rec], bool]) -> list[Rec]:
        found: list[Rec] = []
        for spec in TOPICS:
            found += await read_topic(self.bootstrap, self.topic(spec.dlq), since)
        unexpected = [r for r in found if not expected(r)]
        for rec in unexpected[:10]:
            verdict.fail(f"dead letter on {rec.topic}: {rec.headers.get('dlq_error_kind')} "
                         f"{rec.headers.get('dlq_reason', '')[:200]}")
        verdict.figures["dead_letters"] = len(found)
        verdict.figures["dead_letters_unexpected"] = len(unexpected)
        return found


@dataclass
class Endings:
    """How a set of runs ended, per :func:`verify_endings`."""

    statuses: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    lost: list[str] = field(default_factory=list)
    duplicates: int = 0
    copies: int = 0


def verify_endings(verdict: Verdict, wanted: set[str], completed: list[Rec], events: list[Rec],
                   what: str = "run") -> Endings:
    """Every run in ``wanted`` ended exactly once (one RunCompleted message id; copies of
    one id are redeliveries), and its one terminal run event agrees."""
    endings: dict[str, dict[str, str]] = {}  # run -> message id -> status
    out = Endings()
    for rec in completed:
        body = rec.body()
        run_id = body.get("run_id")
        if run_id in wanted and rec.id is not None:
            ids = endings.setdefault(run_id, {})
            out.copies += rec.id in ids
            ids[rec.id] = f"{body.get('status')}: {body.get('error') or ''}"
    terminal: dict[str, dict[str, str]] = {}
    for rec in events:
        body = rec.body()
        kind = body.get("kind")
        if kind in _TERMINAL and body.get("run_id") in wanted and rec.id is not None:
            terminal.setdefault(body["run_id"], {})[rec.id] = _TERMINAL[kind]
    for run_id in sorted(wanted):
        ends = endings.get(run_id, {})
        if not ends:
            out.lost.append(run_id)
            verdict.fail(f"{what} {run_id} was accepted but never reached a final state")
            continue
        if len(ends) > 1:
            out.duplicates += 1
            verdict.fail(f"{what} {run_id} ended {len(ends)} times: {sorted(ends.values())}")
        status, _, error = next(iter(ends.values())).partition(": ")
        out.statuses[status] += 1
        if status != "completed":
            out.reasons[normalise_reason(error)] += 1
        ends_ev = terminal.get(run_id, {})
        if len(ends_ev) != 1 or next(iter(ends_ev.values())) != status:
            verdict.fail(f"{what} {run_id}: terminal events {sorted(ends_ev.values())} "
                         f"disagree with its RunCompleted ({status})")
    return out


def verify_runs(verdict: Verdict, log: RequestLog, completed: list[Rec],
                events: list[Rec]) -> list[str]:
    """The scenario's runs ended exactly once (:func:`verify_endings`); returns the lost
    runs (accepted, never ended)."""
    ends = verify_endings(verdict, log.run_ids(), completed, events)
    refused = Counter(normalise_reason(s.refused) for s in log.runs() if not s.accepted)
    verdict.figures.update({
        "runs_sent": len(log.runs()),
        "runs_accepted": len(log.run_ids()),
        "refused_at_send": dict(refused),
        "completed": ends.statuses.get("completed", 0),
        "failed": sum(n for s, n in ends.statuses.items() if s != "completed"),
        "failed_reasons": dict(ends.reasons.most_common(8)),
        "lost": len(ends.lost),
        "duplicate_endings": ends.duplicates,
        "redelivered_copies": ends.copies,
    })
    return ends.lost


def verify_workflows(verdict: Verdict, log: RequestLog, workflow_events: list[Rec],
                     requested: list[Rec], completed: list[Rec], events: list[Rec],
                     effects: Mapping[str, int]) -> list[str]:
    """Every accepted workflow run ended exactly once (one final event id), each agent run
    it started ended exactly once, and a completed run's side-effecting step happened
    once (the suite's workflows bump their workflow run id). Returns lost step runs."""
    wanted = log.workflow_run_ids()
    if not wanted:
        return []
    finals: dict[str, dict[str, str]] = {}  # workflow run -> event id -> kind
    for rec in workflow_events:
        body = rec.body()
        kind = str(body.get("kind", ""))
        if kind in _WORKFLOW_FINAL and body.get("workflow_run_id") in wanted and rec.id:
            finals.setdefault(body["workflow_run_id"], {})[rec.id] = (
                f"{_WORKFLOW_FINAL[kind]}: {body.get('reason') or ''}")
    statuses: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    lost = duplicates = 0
    for wf in sorted(wanted):
        ends = finals.get(wf, {})
        if not ends:
            lost += 1
            verdict.fail(f"workflow run {wf} was accepted but never reached a final state")
            continue
        if len(ends) > 1:
            duplicates += 1
            verdict.fail(f"workflow run {wf} ended {len(ends)} times: {sorted(ends.values())}")
        status, _, reason = next(iter(ends.values())).partition(": ")
        statuses[status] += 1
        if status != "completed":
            reasons[normalise_reason(reason)] += 1
        elif effects.get(wf, 0) != 1:
            verdict.fail(f"workflow run {wf} completed but its bump step happened "
                         f"{effects.get(wf, 0)} times")
    steps = {body["run_id"] for rec in requested
             if isinstance((body := rec.body()).get("metadata"), dict)
             and body["metadata"].get("workflow_run_id") in wanted and body.get("run_id")}
    step_ends = verify_endings(verdict, steps, completed, events, what="workflow step run")
    verdict.figures.update({
        "workflows_sent": sum(1 for s in log.sent if s.workflow),
        "workflows_completed": statuses.get("completed", 0),
        "workflows_failed": sum(n for s, n in statuses.items() if s != "completed"),
        "workflows_failed_reasons": dict(reasons.most_common(5)),
        "workflows_lost": lost,
        "workflow_duplicate_endings": duplicates,
        "workflow_step_runs": len(steps),
        "workflow_step_runs_lost": len(step_ends.lost),
    })
    return step_ends.lost


def verify_order(verdict: Verdict, log: RequestLog, completed: list[Rec]) -> None:
    """Sessions sent back to back got their results in the order they were sent."""
    first: dict[str, tuple[int, int]] = {}
    for rec in completed:
        run_id = rec.body().get("run_id")
        if isinstance(run_id, str) and run_id not in first:
            first[run_id] = (rec.partition, rec.offset)
    sessions = log.ordered_sessions()
    broken = 0
    for session, run_ids in sessions.items():
        seen = [r for r in run_ids if r in first]
        if len({first[r][0] for r in seen}) > 1:
            verdict.fail(f"session {session}: results on more than one partition")
        got = sorted(seen, key=lambda r: first[r])
        if got != seen:
            broken += 1
            verdict.fail(f"session {session}: results in order {[run_ids.index(r) for r in got]}")
    verdict.figures["ordered_sessions"] = len(sessions)
    verdict.figures["order_violations"] = broken
