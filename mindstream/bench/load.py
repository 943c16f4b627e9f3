"""Load: runs one at a time (latency) and open-loop arrivals at a fixed rate (throughput).

Open loop means arrivals do not wait for earlier runs to finish, as with real
users; a run's latency is counted from the moment it was *scheduled*, so a
generator that falls behind does not hide queueing (no coordinated omission).
Every run gets a run id chosen here, so the completeness check can account
for each one, including those that never answered.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from mindstream.bench.capture import Captured
from mindstream.bench.stats import Summary, summarize
from mindstream.client import MindstreamClient, RunTimeoutError

__all__ = ["Completeness", "RunSample", "StepResult", "check_completeness", "open_loop", "sequential"]


@dataclass
class RunSample:
    run_id: str
    scheduled: float  # wall clock (s): when the run was due to be submitted
    submitted: float = 0.0  # when the submit call started
    received: float | None = None
    status: str = "pending"  # completed | failed | cancelled | timeout | error

    @property
    def latency_ms(self) -> float | None:
        return None if self.received is None else (self.received - self.scheduled) * 1000


def new_run_id() -> str:
    return f"run-bench-{uuid.uuid4().hex}"


async def _one(client: MindstreamClient, agent: str, text: str, sample: RunSample, timeout: float,
               user: str) -> None:
    sample.submitted = time.time()
    try:
        result = await client.run(agent, text, run_id=sample.run_id, session=f"s-{sample.run_id[10:26]}",
                                  user=user, timeout=timeout, raise_on_failure=False)
    except RunTimeoutError:
        sample.status = "timeout"
        return
    except Exception as exc:  # a failed submit is a result to report
        sample.status = f"error: {type(exc).__name__}"
        return
    sample.received = time.time()
    sample.status = result.status.value


async def sequential(client: MindstreamClient, agent: str, text: str, count: int, *,
                     timeout: float = 30.0,
                     on_progress: Callable[[int], None] | None = None) -> list[RunSample]:
    """``count`` runs, each submitted when the previous one has answered."""
    samples = []
    for i in range(count):
        sample = RunSample(new_run_id(), scheduled=time.time())
        await _one(client, agent, text, sample, timeout, user=f"bench-user-{i % 8}")
        samples.append(sample)
        if on_progress is not None:
            on_progress(i + 1)
    return samples


@dataclass
class StepResult:
    """One open-loop step at a fixed offered rate."""

    offered_rate: float
    duration_s: float
    samples: list[RunSample] = field(default_factory=list)
    submit_lag_ms: Summary | None = None

    @property
    def latencies_ms(self) -> list[float]:
        return [s.latency_ms for s in self.samples if s.latency_ms is not None]

    @property
    def latency(self) -> Summary:
        return summarize(self.latencies_ms)

    def count(self, status: str) -> int:
        return sum(1 for s in self.samples if s.status == status)

    @property
    def achieved_rate(self) -> float:
        """Completions per second over the step: first scheduled arrival to last answer."""
        done = [s for s in self.samples if s.received is not None]
        if not done:
            return 0.0
        span = max(s.received for s in done if s.received) - min(s.scheduled for s in self.samples)
        return len(done) / max(span, self.duration_s)

    def as_dict(self) -> dict[str, object]:
        return {
            "offered_rate": round(self.offered_rate, 2),
            "duration_s": self.duration_s,
            "submitted": len(self.samples),
            "completed": self.count("completed"),
            "failed": sum(1 for s in self.samples if s.status not in ("completed", "timeout")),
            "timeouts": self.count("timeout"),
            "achieved_rate": round(self.achieved_rate, 2),
            "latency_ms": self.latency.as_dict(),
            "submit_lag_ms": self.submit_lag_ms.as_dict() if self.submit_lag_ms else None,
        }


async def open_loop(client: MindstreamClient, agent: str, text: str, rate: float, duration_s: float,
                    *, timeout: float = 60.0) -> StepResult:
    """Submit ``rate`` runs per second for ``duration_s``, then wait for every answer (or timeout)."""
    if rate <= 0 or duration_s <= 0:
        raise ValueError("rate and duration must be positive")
    total = max(1, round(rate * duration_s))
    step = StepResult(offered_rate=rate, duration_s=duration_s)
    tasks: list[asyncio.Task[None]] = []
    lags: list[float] = []
    start = time.time() + 0.05
    for i in range(total):
        due = start + i / rate
        delay = due - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        lags.append(max(0.0, time.time() - due) * 1000)
        sample = RunSample(new_run_id(), scheduled=due)
        step.samples.append(sample)
        tasks.append(asyncio.create_task(_one(client, agent, text, sample, timeout, f"bench-user-{i % 8}")))
    await asyncio.gather(*tasks)
    step.submit_lag_ms = summarize(lags)
    return step


@dataclass(frozen=True)
class Completeness:
    """Did every submitted run end with exactly one ``RunCompleted``?

    ``lost``: no completion at all. ``conflicting``: completions with different
    message ids for one run (two different endings: a bug). ``redelivered``:
    extra copies of the same message (allowed by at-least-once delivery;
    consumers drop them by id).
    """

    submitted: int
    completed_once: int
    lost: list[str]
    conflicting: list[str]
    redelivered: int

    @property
    def ok(self) -> bool:
        return not self.lost and not self.conflicting

    def as_dict(self) -> dict[str, object]:
        return {"submitted": self.submitted, "exactly_one_completion": self.completed_once,
                "lost": len(self.lost), "conflicting": len(self.conflicting),
                "redelivered_copies": self.redelivered, "lost_run_ids": self.lost[:20],
                "conflicting_run_ids": self.conflicting[:20], "ok": self.ok}


def check_completeness(run_ids: Iterable[str], completions: Iterable[Captured]) -> Completeness:
    """Match submitted run ids with the records of ``mindstream.runs.completed.v1``."""
    ids: dict[str, set[str]] = {}
    copies = 0
    wanted = list(dict.fromkeys(run_ids))
    expected = set(wanted)
    for record in completions:
        if record.correlation_id not in expected:
            continue
        seen = ids.setdefault(record.correlation_id, set())
        if record.ce_id in seen:
            copies += 1
        seen.add(record.ce_id)
    lost = [r for r in wanted if r not in ids]
    conflicting = [r for r in wanted if len(ids.get(r, ())) > 1]
    return Completeness(len(wanted), sum(1 for r in wanted if len(ids.get(r, ())) == 1), lost,
                        conflicting, copies)
