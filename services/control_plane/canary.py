"""Canary rollouts: starting, promoting and rolling back, and the automatic gate.

A rollout lives on the newest agent definition (:class:`schemas.agents.Rollout`),
republished on the same version whenever it changes, so reasoning replicas all
route sessions the same way (:mod:`services.reasoning.canary`).

The gate compares the candidate with the stable version on live figures from
the control plane's own runs view (``runs_view`` has each run's agent ref with
its version, status, duration and tokens; telemetry's rollups are per agent,
not per version), over fixed windows of ``window_s``:

- failure rate: candidate minus stable above ``max_failure_rate_increase``;
- p95 latency: candidate above ``max_latency_ratio`` times stable;
- cost per run: tokens per run (the control plane has no price table) above
  ``max_cost_ratio`` times stable.

A window is judged once the runs view has seen runs of the canary end after
it (the view follows topics and may lag the clock by more than a window under
load; judging by the clock alone would see empty windows), oldest first. A
window with fewer than ``min_runs`` candidate runs is inconclusive (the
streak neither grows nor resets). When ``failing_windows`` evaluated windows
in a row fail, the rollout is rolled back: every new session goes back to the
stable version, an audit event ``agent.canary.rolled_back`` says why (with the
figures), and a warning is logged. No run event is emitted: a
:class:`~schemas.runs.RunEvent` belongs to a run, and a rollback is not a
step of any run. Promotion is never automatic.

Several control-plane replicas may evaluate the same window: the verdict is
recorded with a unique id (agent, candidate, canary start, window), and only
the replica whose insert wins acts on it.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from schemas.agents import AgentDefinition, Rollout, RolloutState
from schemas.audit import AuditOutcome
from schemas.topics import AGENTS
from services.control_plane.store import AGENTS_VIEW, RUNS_VIEW
from services.control_plane.views import AgentsView
from shared.audit import AuditEmitter
from shared.kafka.publisher import Publisher
from shared.mongo import Doc, IndexSpec

__all__ = [
    "CANARY_WINDOWS",
    "INDEXES",
    "CanaryGates",
    "CanaryMonitor",
    "VersionFigures",
    "WindowVerdict",
    "compare",
    "figures_of",
    "gates_from",
    "promoted",
    "rolled_back",
    "started",
]

log = logging.getLogger("mindstream.control_plane.canary")

CANARY_WINDOWS = "canary_windows"
_MAX_WINDOWS_PER_TICK = 50
INDEXES: dict[str, list[IndexSpec]] = {
    CANARY_WINDOWS: [IndexSpec([("canary", 1), ("window", -1)], name="canary_window")],
}


# -- changing a rollout: the definition to publish ---------------------------------------


def started(newest: AgentDefinition, *, candidate: int, stable: int, share: float,
            now: datetime) -> AgentDefinition:
    """``newest`` carrying a new active rollout (the candidate must be the newest content)."""
    if candidate != newest.version:
        raise ValueError(f"the candidate must be the newest version ({newest.id}@{newest.version}); "
                         f"publish it first, or give its file")
    if stable >= candidate:
        raise ValueError(f"the stable version ({stable}) must be older than the candidate "
                         f"({candidate})")
    if newest.rollout is not None and newest.rollout.state is RolloutState.ACTIVE:
        raise ValueError(f"{newest.id} already has an active canary "
                         f"(@{newest.rollout.candidate_version}); promote or roll it back first")
    rollout = Rollout(stable_version=stable, candidate_version=candidate,
                      candidate_share=share, started_at=now)
    return newest.model_copy(update={"rollout": rollout, "updated_at": now})


def _active(newest: AgentDefinition) -> Rollout:
    if newest.rollout is None or newest.rollout.state is not RolloutState.ACTIVE:
        raise ValueError(f"{newest.id} has no active canary")
    return newest.rollout


def promoted(newest: AgentDefinition, *, now: datetime) -> AgentDefinition:
    """The candidate (the newest content) serves every session."""
    _active(newest)
    return newest.model_copy(update={"rollout": None, "updated_at": now})


def rolled_back(newest: AgentDefinition, *, reason: str, now: datetime) -> AgentDefinition:
    """Every new session goes back to the stable version; the record stays for operators."""
    rollout = _active(newest).model_copy(update={"state": RolloutState.ROLLED_BACK,
                                                 "reason": reason[:1000]})
    return newest.model_copy(update={"rollout": rollout, "updated_at": now})


# -- the gate ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CanaryGates:
    window_s: float = 300.0
    failing_windows: int = 2
    min_runs: int = 5
    max_failure_rate_increase: float = 0.05
    max_latency_ratio: float = 1.5
    max_cost_ratio: float = 1.5


@dataclass(frozen=True)
class VersionFigures:
    runs: int = 0
    failed: int = 0
    p95_ms: float | None = None
    tokens_per_run: float | None = None

    @property
    def failure_rate(self) -> float:
        return self.failed / self.runs if self.runs else 0.0


@dataclass(frozen=True)
class WindowVerdict:
    verdict: Literal["pass", "fail", "inconclusive"]
    reasons: list[str] = field(default_factory=list)


def _p95(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(0.95 * len(ordered))) - 1]


def _duration_ms(doc: Doc) -> float | None:
    metrics = doc.get("metrics") or {}
    if metrics.get("duration_ms"):
        return float(metrics["duration_ms"])
    start, end = doc.get("started_at") or doc.get("created_at"), doc.get("ended_at")
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds() * 1000)


def figures_of(docs: list[Doc]) -> VersionFigures:
    """Figures of the ended runs in ``docs`` (``runs_view`` documents)."""
    ended = [d for d in docs if d.get("status") in ("completed", "failed", "cancelled")]
    durations = [ms for d in ended if (ms := _duration_ms(d)) is not None]
    tokens = [float((d.get("usage") or {}).get("prompt_tokens", 0))
              + float((d.get("usage") or {}).get("completion_tokens", 0))
              for d in ended if d.get("usage")]
    return VersionFigures(runs=len(ended), failed=sum(d["status"] == "failed" for d in ended),
                          p95_ms=_p95(durations),
                          tokens_per_run=sum(tokens) / len(tokens) if tokens else None)


def compare(candidate: VersionFigures, stable: VersionFigures, gates: CanaryGates) -> WindowVerdict:
    if candidate.runs < gates.min_runs:
        return WindowVerdict("inconclusive",
                             [f"{candidate.runs} candidate run(s), need {gates.min_runs}"])
    reasons = []
    rise = candidate.failure_rate - stable.failure_rate
    if rise > gates.max_failure_rate_increase:
        reasons.append(f"failure rate {candidate.failure_rate:.0%} vs stable "
                       f"{stable.failure_rate:.0%} (+{rise:.0%} > "
                       f"{gates.max_failure_rate_increase:.0%})")
    comparable = stable.runs >= gates.min_runs
    if comparable and candidate.p95_ms is not None and stable.p95_ms:
        ratio = candidate.p95_ms / stable.p95_ms
        if ratio > gates.max_latency_ratio:
            reasons.append(f"p95 latency {candidate.p95_ms:.0f} ms vs stable "
                           f"{stable.p95_ms:.0f} ms (×{ratio:.2f} > ×{gates.max_latency_ratio:g})")
    if comparable and candidate.tokens_per_run is not None and stable.tokens_per_run:
        ratio = candidate.tokens_per_run / stable.tokens_per_run
        if ratio > gates.max_cost_ratio:
            reasons.append(f"cost {candidate.tokens_per_run:.0f} tokens/run vs stable "
                           f"{stable.tokens_per_run:.0f} (×{ratio:.2f} > ×{gates.max_cost_ratio:g})")
    return WindowVerdict("fail" if reasons else "pass", reasons)


# -- the monitor -------------------------------------------------------------------------


class CanaryMonitor:
    """Evaluates every active canary once per window; rolls back on a failing streak."""

    def __init__(self, db: AsyncDatabase[Doc], publisher: Publisher, gates: CanaryGates, *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._db, self._publisher, self.gates, self._clock = db, publisher, gates, clock
        self._agents = AgentsView(db)
        self._windows = db[CANARY_WINDOWS]
        self._audit = AuditEmitter(publisher, "control-plane")

    @property
    def grace_s(self) -> float:
        """Margin behind the view's newest run before a window is judged (partitions differ)."""
        return min(5.0, self.gates.window_s * 0.25)

    async def run(self) -> None:
        every = min(5.0, self.gates.window_s / 4)
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("canary evaluation failed; trying again next tick")
            await asyncio.sleep(every)

    async def tick(self) -> list[Doc]:
        """Judge the finished, unjudged windows of every active canary; returns the verdicts."""
        recorded: list[Doc] = []
        async for doc in self._db[AGENTS_VIEW].find({"definition.rollout.state": "active"}):
            definition = AgentDefinition.model_validate(doc["definition"])
            recorded += await self._judge_due(definition)
        return recorded

    async def _watermark(self, refs: list[str]) -> datetime | None:
        """When the newest run of the canary's versions seen by the view ended.

        The runs view follows topics and may lag behind the clock by far more than
        a window under load: a window is judged only once the view has seen runs
        end after it, never on the clock alone, or a lagging view would make
        every window look empty.
        """
        newest = await self._db[RUNS_VIEW].find(
            {"agent_id": {"$in": refs}, "ended_at": {"$ne": None}}, {"ended_at": 1}).sort(
            "ended_at", -1).limit(1).to_list()
        return newest[0]["ended_at"] if newest else None

    async def _judge_due(self, definition: AgentDefinition) -> list[Doc]:
        rollout = definition.rollout
        assert rollout is not None
        w = self.gates.window_s
        refs = [f"{definition.id}@{rollout.candidate_version}",
                f"{definition.id}@{rollout.stable_version}"]
        watermark = await self._watermark(refs)
        if watermark is None:
            return []
        canary = (f"{definition.id}:{rollout.candidate_version}:"
                  f"{int(rollout.started_at.timestamp() * 1000)}")
        last_due = math.floor((watermark.timestamp() - self.grace_s) / w) - 1
        judged = await self._windows.find({"canary": canary}, {"window": 1}).sort(
            "window", -1).limit(1).to_list()
        first = math.floor(rollout.started_at.timestamp() / w)
        if judged:
            first = max(first, int(judged[0]["window"]) + 1)
        first = max(first, last_due - _MAX_WINDOWS_PER_TICK + 1)  # after a long outage
        recorded = []
        for index in range(first, last_due + 1):
            doc = await self._judge(definition, canary, index)
            if doc is None:
                break  # another replica is judging this canary
            recorded.append(doc)
            if doc.get("rolled_back"):
                break
        return recorded

    async def _figures(self, ref: str, start: datetime, end: datetime) -> VersionFigures:
        docs = await self._db[RUNS_VIEW].find(
            {"agent_id": ref, "ended_at": {"$gte": start, "$lt": end}},
            {"status": 1, "metrics": 1, "usage": 1, "started_at": 1, "created_at": 1,
             "ended_at": 1}).to_list()
        return figures_of(docs)

    async def _judge(self, definition: AgentDefinition, canary: str, index: int) -> Doc | None:
        rollout = definition.rollout
        assert rollout is not None
        w = self.gates.window_s
        start = max(datetime.fromtimestamp(index * w, UTC), rollout.started_at)
        end = datetime.fromtimestamp((index + 1) * w, UTC)
        candidate = await self._figures(f"{definition.id}@{rollout.candidate_version}", start, end)
        stable = await self._figures(f"{definition.id}@{rollout.stable_version}", start, end)
        verdict = compare(candidate, stable, self.gates)
        previous = await self._windows.find({"canary": canary, "window": {"$lt": index}}).sort(
            "window", -1).limit(1).to_list()
        streak = int(previous[0]["streak"]) if previous else 0
        streak = {"pass": 0, "fail": streak + 1, "inconclusive": streak}[verdict.verdict]
        doc: Doc = {"_id": f"{canary}:{index}", "canary": canary, "agent": definition.id,
                    "candidate_version": rollout.candidate_version,
                    "stable_version": rollout.stable_version, "window": index,
                    "start": start, "end": end, "verdict": verdict.verdict,
                    "reasons": verdict.reasons, "streak": streak,
                    "candidate": asdict(candidate), "stable": asdict(stable),
                    "judged_at": self._clock()}
        try:
            await self._windows.insert_one(doc)
        except DuplicateKeyError:
            return None  # another replica judged this window
        log.info("canary %s window %d: %s %s", canary, index, verdict.verdict,
                 "; ".join(verdict.reasons))
        if verdict.verdict == "fail" and streak >= self.gates.failing_windows:
            doc["rolled_back"] = await self._roll_back(definition, doc)
        return doc

    async def _roll_back(self, definition: AgentDefinition, window: Doc) -> bool:
        reason = (f"canary gate failed for {window['streak']} consecutive windows of "
                  f"{self.gates.window_s:g}s: " + "; ".join(window["reasons"]))
        current = await self._agents.get(definition.id)
        if current is None:
            return False
        newest = AgentDefinition.model_validate(current["definition"])
        if newest.rollout != definition.rollout:
            return False  # changed meanwhile (promoted, rolled back, replaced): nothing to undo
        changed = rolled_back(newest, reason=reason, now=self._clock())
        await self._agents.replace(changed, newest.version)
        await self._publisher.publish(AGENTS, changed)
        log.warning("canary of %s@%d rolled back to @%d: %s", definition.id,
                    window["candidate_version"], window["stable_version"], reason)
        await self._audit.emit(
            "agent.canary.rolled_back", ("agent", definition.id), outcome=AuditOutcome.SUCCESS,
            reason=reason, key=window["_id"],
            details={"candidate_version": window["candidate_version"],
                     "stable_version": window["stable_version"],
                     "candidate": window["candidate"], "stable": window["stable"],
                     "windows": window["streak"], "automatic": True})
        return True


def gates_from(settings: Any) -> CanaryGates:
    """The gates from the control plane's settings (``canary_*``)."""
    return CanaryGates(
        window_s=settings.canary_window_s, failing_windows=settings.canary_failing_windows,
        min_runs=settings.canary_min_runs,
        max_failure_rate_increase=settings.canary_max_failure_rate_increase,
        max_latency_ratio=settings.canary_max_latency_ratio,
        max_cost_ratio=settings.canary_max_cost_ratio)

