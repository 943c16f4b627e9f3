"""Running a suite through the real pipeline: every case is a real run.

Each case gets its own session and user (so memories of one case never help
another), sends its ``session`` turns first in that session, waits
``settle_ms`` (memory records a turn from ``runs.completed`` while the reply
reaches us, so the next turn's context could otherwise miss it), then sends
the input and scores what came back: the :class:`RunCompleted` from the reply
topic, plus the calls the run asked for (:class:`~mindstream.evals.collect.RunWatch`).

Cases run ``concurrency`` at a time. Latency is measured here, from publishing
the request to the result: what a user of the system would wait, queueing
included.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from mindstream.client import MindstreamClient, RunTimeoutError
from mindstream.evals.checks import CaseResult, Grader, Observation, score_case
from mindstream.evals.collect import RunWatch
from mindstream.evals.scoring import Verdict, summarise
from mindstream.evals.suite import Case, Suite
from schemas.agents import split_agent_ref
from schemas.runs import RunCompleted
from shared.settings import KafkaSettings

__all__ = ["EvalReport", "run_suite"]


@dataclass
class EvalReport:
    eval_id: str
    suite: Suite
    agent: str  # as asked: "assistant" or "assistant@3"
    results: list[CaseResult]
    verdict: Verdict
    started_at: datetime
    finished_at: datetime
    notes: list[str] = field(default_factory=list)

    @property
    def agent_id(self) -> str:
        return split_agent_ref(self.agent)[0]

    def versions(self) -> Counter[int]:
        """Agent versions that answered the cases (several while a canary runs)."""
        found: Counter[int] = Counter()
        for r in self.results:
            version = split_agent_ref(r.observation.agent_ref)[1] if r.observation.agent_ref else None
            if version is not None:
                found[version] += 1
        return found

    @property
    def agent_version(self) -> int | None:
        """The pinned version, else the one version that answered (None when mixed)."""
        pinned = split_agent_ref(self.agent)[1]
        if pinned is not None:
            return pinned
        versions = self.versions()
        return next(iter(versions)) if len(versions) == 1 else None

    @property
    def failing(self) -> list[CaseResult]:
        return [r for r in self.results if not r.passed]


def _observe(result: RunCompleted, latency_ms: float) -> Observation:
    return Observation(
        run_id=result.run_id, status=result.status.value, output=result.output,
        structured_output=result.structured_output, error=result.error,
        latency_ms=latency_ms, tokens=result.usage.total_tokens, agent_ref=result.agent_id)


async def _run_case(client: MindstreamClient, watch: RunWatch, suite: Suite, case: Case,
                    agent: str, eval_id: str, grader: Grader | None) -> CaseResult:
    tag = f"eval-{eval_id[:8]}-{case.id}"
    session, user = f"{tag}-{uuid.uuid4().hex[:6]}", tag
    metadata = {"eval_suite": suite.suite, "eval_id": eval_id, "eval_case": case.id}
    agent = case.agent or agent
    for i, turn in enumerate(case.session, start=1):
        try:
            setup = await client.run(agent, turn, session=session, user=user,
                                     timeout=suite.timeout_s, raise_on_failure=False,
                                     metadata=metadata)
        except RunTimeoutError as exc:
            return await score_case(case, Observation(
                run_id="-", status="setup_failed", error=f"setup turn {i}: {exc}"), grader)
        if setup.status.value != "completed":
            return await score_case(case, Observation(
                run_id=setup.run_id, status="setup_failed", agent_ref=setup.agent_id,
                error=f"setup turn {i} {setup.status.value}: {setup.error}"), grader)
    if case.session and suite.settle_ms:
        await asyncio.sleep(suite.settle_ms / 1000)
    run_id = f"{tag}-{uuid.uuid4().hex[:8]}"
    watch.expect(run_id)
    started = time.perf_counter()
    try:
        result = await client.run(agent, case.input, session=session, user=user, run_id=run_id,
                                  timeout=suite.timeout_s, raise_on_failure=False,
                                  metadata=metadata)
    except RunTimeoutError as exc:
        obs = Observation(run_id=run_id, status="timeout", error=str(exc),
                          latency_ms=suite.timeout_s * 1000)
        return await score_case(case, obs, grader)
    obs = _observe(result, (time.perf_counter() - started) * 1000)
    obs.calls = await watch.calls(run_id)
    return await score_case(case, obs, grader)


async def run_suite(
    suite: Suite,
    *,
    agent: str | None = None,
    kafka: KafkaSettings | None = None,
    concurrency: int | None = None,
    grader: Grader | None = None,
    on_result: Callable[[CaseResult], None] | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> EvalReport:
    """Run every case of ``suite`` against ``agent`` (default: the suite's agent)."""
    agent = agent or suite.agent
    if not agent:
        raise ValueError("no agent to evaluate: give --agent or set `agent:` in the suite")
    kafka = kafka or KafkaSettings()
    eval_id = f"ev-{uuid.uuid4().hex[:16]}"
    started = clock()
    limit = asyncio.Semaphore(concurrency or suite.concurrency)
    results: dict[str, CaseResult] = {}

    async with RunWatch(kafka.bootstrap_servers, kafka.topic_prefix,
                        client_id=f"eval-{eval_id}") as watch, \
            MindstreamClient(settings=kafka, client_id=f"eval-{eval_id}") as client:

        async def one(case: Case) -> None:
            async with limit:
                result = await _run_case(client, watch, suite, case, agent, eval_id, grader)
            results[case.id] = result
            if on_result is not None:
                on_result(result)

        await asyncio.gather(*(one(case) for case in suite.cases))
    ordered = [results[case.id] for case in suite.cases]
    notes = []
    if grader is None and any(r.notes for r in ordered):
        notes.append("rubric checks were skipped: no grader model configured "
                     "(--grader-model, --grader-base-url)")
    return EvalReport(eval_id, suite, agent, ordered, summarise(ordered, suite.thresholds),
                      started, clock(), notes)
