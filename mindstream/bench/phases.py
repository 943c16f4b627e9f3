"""The measuring phases: floor, warm-up, latency, the open-loop ramp, completeness.

Each takes what it needs explicitly and returns JSON-ready figures; the order
and the stack's lifecycle are :mod:`mindstream.bench.runner`'s business.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mindstream.bench import dbstats, load
from mindstream.bench.capture import read_topics
from mindstream.bench.config import BenchConfig
from mindstream.bench.dbstats import (
    per_run,
    profile_per_run,
    read_profile,
    server_command_counts,
)
from mindstream.bench.floor import ANSWER_PATH, TOOL_PATH, measure_mongo, measure_relay
from mindstream.bench.machine import load_average
from mindstream.bench.paths import BenchPaths, Say
from mindstream.bench.procs import CpuSample, cpu_ms_per_run, net_of_idle, rss_mib, usage_between
from mindstream.bench.report import is_sustained, sustained_rate
from mindstream.bench.stack import BenchStack, Layout, ModelServer
from mindstream.bench.stages import ANSWER_POINTS, TOOL_POINTS, stage_breakdown, timelines
from mindstream.bench.stats import ratio, summarize
from mindstream.client import MindstreamClient
from schemas.topics import RUNS_COMPLETED, RUNS_EVENTS, RUNS_READY, TOOLS_CALLS, TOOLS_RESULTS

__all__ = [
    "AGENT_ANSWER",
    "AGENT_TOOL",
    "Idle",
    "RssWatch",
    "check_all_ended",
    "measure_floor",
    "measure_idle",
    "measure_latency",
    "ramp",
    "rss_now",
    "throughput_phase",
    "warm_up",
]

AGENT_ANSWER, TEXT_ANSWER = "bench-answer", "ping"
AGENT_TOOL, TEXT_TOOL = "bench-tool", "tool: ping"


class RssWatch:
    """Samples the resident memory of each process while load runs; keeps the maximum."""

    def __init__(self, pids: Mapping[str, int], interval_s: float) -> None:
        self.pids, self.interval = dict(pids), interval_s
        self.peak: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    def _sample(self) -> None:
        for name, pid in self.pids.items():
            value = rss_mib(pid)
            if value is not None and value > self.peak.get(name, 0.0):
                self.peak[name] = value

    async def _loop(self) -> None:
        while True:
            self._sample()
            await asyncio.sleep(self.interval)

    def __enter__(self) -> RssWatch:
        self._task = asyncio.get_running_loop().create_task(self._loop())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
        self._sample()


def rss_now(pids: Mapping[str, int]) -> dict[str, float]:
    return {name: round(v, 1) for name, pid in pids.items() if (v := rss_mib(pid)) is not None}


async def measure_floor(paths: BenchPaths, config: BenchConfig, say: Say) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for kind, path in (("answer", ANSWER_PATH), ("tool", TOOL_PATH)):
        relay = await measure_relay(paths.bootstrap, path.hops, config.floor_samples,
                                    warmup=config.floor_warmup, linger_ms=paths.linger_ms,
                                    max_s=config.floor_max_s)
        mongo = await measure_mongo(paths.mongo_uri, path, config.floor_samples,
                                    warmup=config.floor_warmup, max_s=config.floor_max_s)
        result[kind] = {
            **path.as_dict(),
            "relay_ms": relay.as_dict(), "mongo_ms": mongo.as_dict(),
            "floor_p50_ms": round(relay.p50 + mongo.p50, 3),
            "floor_p99_ms": round(relay.p99 + mongo.p99, 3),
        }
        say(f"floor, {kind} path: {path.hops} hops p50 {relay.p50:.1f} ms (p99 {relay.p99:.1f}); "
            f"{path.round_trips} MongoDB round trips p50 {mongo.p50:.1f} ms (p99 {mongo.p99:.1f})")
    return result


async def warm_up(client: MindstreamClient, config: BenchConfig, say: Say) -> None:
    for agent, text in ((AGENT_ANSWER, TEXT_ANSWER), (AGENT_TOOL, TEXT_TOOL)):
        samples = await load.sequential(client, agent, text, config.warmup_runs,
                                        timeout=config.run_timeout_s)
        bad = [s for s in samples if s.status != "completed"]
        if bad:
            raise RuntimeError(f"warm-up run of {agent} ended {bad[0].status}; see the service logs")
    # A burst, so every consumer of every group has handled a message before timing starts.
    note = ""
    if config.warmup_burst > 0:
        burst = await load.open_loop(client, AGENT_ANSWER, TEXT_ANSWER, float(config.warmup_burst), 1.0,
                                     timeout=config.run_timeout_s)
        note = f", burst of {len(burst.samples)} (p50 {burst.latency.p50:.0f} ms)"
    say(f"warm-up done ({config.warmup_runs} runs per agent{note})")


async def measure_latency(client: MindstreamClient, config: BenchConfig, layout: Layout,
                          paths: BenchPaths, floor: Mapping[str, Any], pids: Mapping[str, int],
                          idle: Idle, db_profile: Path | None,
                          say: Say) -> tuple[dict[str, Any], list[str]]:
    """Runs one at a time, a short pause between them (the work a run leaves after its
    reply, like learning, is not charged to the next); per-stage timings afterwards."""
    out: dict[str, Any] = {}
    run_ids: list[str] = []
    raw: dict[str, list[load.RunSample]] = {}
    for kind, agent, text in (("answer", AGENT_ANSWER, TEXT_ANSWER), ("tool", AGENT_TOOL, TEXT_TOOL)):
        started = time.monotonic()
        samples: list[load.RunSample] = []
        profile_before = read_profile(db_profile) if db_profile else {}
        before = CpuSample.take(pids, time.time())
        ops_before = await server_command_counts(paths.mongo_uri)
        while len(samples) < config.latency_runs and time.monotonic() - started < config.latency_max_s:
            samples += await load.sequential(client, agent, text, 1, timeout=config.run_timeout_s)
            await asyncio.sleep(config.latency_gap_s)
        # The runs' after-reply work (memory learning, telemetry, the control plane's views)
        # belongs to them too: wait until the services' command counts stop moving.
        profile_after = await settled_profile(db_profile, idle.db_rate) if db_profile else {}
        if not db_profile:
            await asyncio.sleep(1.0)
        ops_after = await server_command_counts(paths.mongo_uri)
        after = CpuSample.take(pids, time.time())
        raw[kind] = samples
        run_ids += [s.run_id for s in samples]
        e2e = summarize(s.latency_ms for s in samples if s.latency_ms is not None)
        statuses = {st: sum(1 for s in samples if s.status == st) for st in {s.status for s in samples}}
        f = floor.get(kind, {})
        out[kind] = {
            "agent": agent, "runs": len(samples), "statuses": statuses, "e2e_ms": e2e.as_dict(),
            "overhead_vs_floor": {
                "floor_p50_ms": f.get("floor_p50_ms"), "floor_p99_ms": f.get("floor_p99_ms"),
                "p50_x": round(ratio(e2e.p50, f.get("floor_p50_ms") or 0.0), 2),
                "p99_x": round(ratio(e2e.p99, f.get("floor_p99_ms") or 0.0), 2),
            },
            "cpu_ms_per_run": cpu_ms_per_run(before, after, len(samples)),
            "cpu_ms_per_run_net": net_of_idle(cpu_ms_per_run(before, after, len(samples)),
                                              idle.cores, after.at - before.at, len(samples)),
            "background_cores": round(usage_between(before, after).get("other", 0.0), 2),
            "db_commands_per_run": per_run(ops_before, ops_after, len(samples)),
            "db_commands_per_run_by_service": profile_per_run(
                profile_before, profile_after, len(samples), idle_rate=idle.db_rate,
                elapsed_s=after.at - before.at),
            "samples_ms": [round(s.latency_ms, 2) for s in samples if s.latency_ms is not None],
        }
        say(f"latency, {kind} run: {len(samples)} runs, p50 {e2e.p50:.1f} ms, p95 {e2e.p95:.1f}, "
            f"p99 {e2e.p99:.1f} (floor p50 {f.get('floor_p50_ms', float('nan')):.1f} ms)")
    records = await read_topics(paths.bootstrap, [
        spec.physical(layout.prefix)
        for spec in (RUNS_READY, RUNS_EVENTS, TOOLS_CALLS, TOOLS_RESULTS)])
    for kind, points in (("answer", ANSWER_POINTS), ("tool", TOOL_POINTS)):
        times = {s.run_id: (s.scheduled, s.received) for s in raw[kind] if s.received is not None}
        lines = timelines(records, layout.prefix, times)
        out[kind]["stages"] = [stage.as_dict() for stage in stage_breakdown(lines.values(), points)]
    return out, run_ids


async def ramp(client: MindstreamClient, config: BenchConfig, pids: Mapping[str, int],
               model: ModelServer, say: Say,
               drain: Callable[[list[str]], Awaitable[object]]) -> list[dict[str, Any]]:
    """Climb the ladder of offered rates until one is not sustained; if the first is
    not, halve it until one is; optionally one step between the last good and first bad."""
    steps: list[dict[str, Any]] = []
    began = time.monotonic()
    last_good: float | None = None
    first_bad: float | None = None

    async def step(rate: float) -> bool:
        model.forget_requests()
        before = CpuSample.take(pids, time.time())
        result = await load.open_loop(client, AGENT_ANSWER, TEXT_ANSWER, rate, config.step_s,
                                      timeout=config.run_timeout_s)
        after = CpuSample.take(pids, time.time())
        entry = result.as_dict()
        entry["cpu_cores"] = {k: round(v, 2) for k, v in usage_between(before, after).items()}
        entry["cpu_ms_per_run"] = cpu_ms_per_run(before, after, result.count("completed"))
        entry["run_ids"] = [s.run_id for s in result.samples]
        entry["load_average"] = load_average()
        steps.append(entry)
        ok = is_sustained(entry, config.bound_ms)
        lat = result.latency
        say(f"  {rate:>6g} runs/s offered: {entry['achieved_rate']:>6.1f} done/s, p50 {lat.p50:.0f} ms, "
            f"p99 {lat.p99:.0f} ms, timeouts {entry['timeouts']}{'' if ok else '  <- over the bound'}")
        return ok

    def budget_left() -> bool:
        return time.monotonic() - began + config.step_s * 1.5 <= config.phase_budget_s

    for rate in config.rates:
        if steps and not budget_left():
            say("  (time budget of the phase reached)")
            break
        if await step(rate):
            last_good = rate
        else:
            first_bad = rate
            break
    # Even the first rung was too much: halve until a rate is sustained (after the
    # backlog of the failed step has drained, so it does not count against the next).
    rate = first_bad or 0.0
    for _ in range(config.descend_steps):
        if last_good is not None or rate / 2 < 0.25 or not budget_left():
            break
        await drain(steps[-1]["run_ids"])
        rate /= 2
        if await step(rate):
            last_good = rate
        else:
            first_bad = rate
    if (config.bisect and last_good is not None and first_bad is not None
            and steps[-1]["timeouts"] == 0
            and time.monotonic() - began + config.step_s * 1.5 <= config.phase_budget_s):
        middle = round((last_good + first_bad) / 2)
        if last_good < middle < first_bad:
            await step(float(middle))
    return steps


async def check_all_ended(paths: BenchPaths, layout: Layout, run_ids: list[str],
                        drain_s: float) -> dict[str, Any]:
    """Wait (up to ``drain_s``) until every run has ended, then check each ended exactly once.

    Runs the client gave up on (timeouts) may still be queued: they are lost only if
    they have not ended when the system has had time to drain.
    """
    topic = [RUNS_COMPLETED.physical(layout.prefix)]
    began = time.monotonic()
    while True:
        result = load.check_completeness(run_ids, await read_topics(paths.bootstrap, topic))
        if not result.lost or time.monotonic() - began > drain_s:
            break
        await asyncio.sleep(2.0)
    out = result.as_dict()
    out["drain_s"] = round(time.monotonic() - began, 1)
    return out


async def settled_profile(folder: Path, idle_rate: Mapping[str, Mapping[str, float]],
                          max_s: float = 20.0, every_s: float = 1.0) -> dict[str, dict[str, int]]:
    """The services' command counts once they stop growing faster than when idle
    (the backlog a load left is worked off), or after ``max_s``."""
    began = time.monotonic()
    previous = read_profile(folder)
    while time.monotonic() - began < max_s:
        await asyncio.sleep(every_s)
        current = read_profile(folder)
        grew = sum(sum(c.values()) for c in current.values()) - sum(
            sum(c.values()) for c in previous.values())
        idle = sum(sum(r.values()) for r in idle_rate.values()) * every_s
        if grew <= idle + 1:
            return current
        previous = current
    return previous


@dataclass(frozen=True)
class Idle:
    """What the system does with no runs at all (sweepers, monitors, heartbeats)."""

    cores: dict[str, float]  # per process
    db_rate: dict[str, dict[str, float]]  # database commands per second, per service instance


async def measure_idle(pids: Mapping[str, int], seconds: float, db_profile: Path | None) -> Idle:
    profile_before = read_profile(db_profile) if db_profile else {}
    before = CpuSample.take(pids, time.time())
    await asyncio.sleep(seconds)
    after = CpuSample.take(pids, time.time())
    profile_after = read_profile(db_profile) if db_profile else {}
    cores = {k: round(v, 3) for k, v in usage_between(before, after).items()}
    return Idle(cores, dbstats.rate(profile_before, profile_after, after.at - before.at))


async def throughput_phase(stack: BenchStack, paths: BenchPaths, config: BenchConfig, layout: Layout,
                            replicas: int, say: Say, *, floor: Mapping[str, Any] | None,
                            report: dict[str, Any]) -> dict[str, Any]:
    """Start the services on ``layout``, warm up, (latency), ramp, check completeness."""
    await stack.create_topics(layout)
    stack.apply_agents(layout)
    started = time.monotonic()
    stack.start(layout, replicas=replicas)
    say(f"{len(stack.running)} service processes ready in {time.monotonic() - started:.1f}s "
        f"({replicas} per service; {layout.partitions} partitions per session topic)")
    pids = {**stack.pids(), **paths.infra_pids, "bench-client": os.getpid()}
    service_pids = stack.pids()
    run_ids: list[str] = []
    # Before any run, the services' database commands are their periodic work alone
    # (sweepers, monitors): the level the system must fall back to before "idle" is measured.
    periodic = (await measure_idle(pids, min(2.0, config.idle_cpu_s), stack.db_profile)).db_rate
    async with MindstreamClient(paths.bootstrap, topic_prefix=layout.prefix,
                                client_id=f"bench-{layout.prefix.rstrip('.')}") as client:
        await warm_up(client, config, say)
        if stack.db_profile is not None:  # the warm-up's after-reply work is not idle
            await settled_profile(stack.db_profile, periodic)
        idle = rss_now({**service_pids, **paths.infra_pids})
        idle_state = await measure_idle(pids, config.idle_cpu_s, stack.db_profile)
        say("idle CPU (cores): " + ", ".join(f"{k} {v:.2f}" for k, v in idle_state.cores.items()))
        if floor is not None:
            say("phase: latency at low load (one run at a time)")
            report["latency"], ids = await measure_latency(
                client, config, layout, paths, floor, pids, idle_state, stack.db_profile, say)
            run_ids += ids
        say(f"phase: {'throughput' if replicas == 1 else 'scaling'} -- open-loop ramp, "
            f"{config.step_s:g}s per step, until p99 > {config.bound_ms:g} ms")
        with RssWatch({**service_pids, **paths.infra_pids}, config.rss_interval_s) as watch:
            steps = await ramp(client, config, pids, stack.model, say,
                               lambda ids: check_all_ended(paths, layout, ids, config.run_timeout_s))
    for s in steps:
        run_ids += s.pop("run_ids")
    dead = stack.dead()
    completeness = await check_all_ended(paths, layout, run_ids, config.run_timeout_s * 2)
    say(f"completeness: {completeness['submitted']} runs, {completeness['exactly_one_completion']} with "
        f"exactly one RunCompleted, lost {completeness['lost']}, conflicting {completeness['conflicting']} "
        f"(after {completeness['drain_s']:g}s of draining)"
        + (f"; DIED: {', '.join(dead)}" if dead else ""))
    return {
        "replicas": replicas, "partitions": layout.partitions, "bound_ms": config.bound_ms,
        "workload": f"{AGENT_ANSWER} (one model call, no tool), a new session per run",
        "steps": steps,
        "sustained_runs_per_s": sustained_rate(steps, config.bound_ms),
        "completeness": completeness,
        "services_died": dead,
        "rss_idle_mib": idle,
        "cpu_idle_cores": idle_state.cores,
        "rss_load_max_mib": {k: round(v, 1) for k, v in watch.peak.items()},
    }
