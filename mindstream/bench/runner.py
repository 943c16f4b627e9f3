"""The bench, phase by phase: floor, latency, throughput, scaling, memory; then the report.

Each phase prints as it goes. Services run as separate processes on a
bench-only topic prefix and database, which are deleted at the end; the
model is the scripted server with zero think time and the only tool a no-op,
so what is measured is mindstream itself (and the broker and database it
stands on).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mindstream.bench import load
from mindstream.bench.capture import read_topics
from mindstream.bench.config import BenchConfig
from mindstream.bench.floor import ANSWER_PATH, TOOL_PATH, measure_mongo, measure_relay
from mindstream.bench.machine import describe, load_average
from mindstream.bench.procs import CpuSample, rss_mib, usage_between
from mindstream.bench.report import format_table, is_sustained, sustained_rate, targets, write_results
from mindstream.bench.stack import BenchStack, Layout, ModelServer
from mindstream.bench.stages import ANSWER_POINTS, TOOL_POINTS, stage_breakdown, timelines
from mindstream.bench.stats import ratio, summarize
from mindstream.client import MindstreamClient
from schemas.topics import (
    RUNS_COMPLETED,
    RUNS_EVENTS,
    RUNS_READY,
    TOOLS_CALLS,
    TOOLS_RESULTS,
)

__all__ = ["BenchPaths", "run_bench"]

AGENT_ANSWER, TEXT_ANSWER = "bench-answer", "ping"
AGENT_TOOL, TEXT_TOOL = "bench-tool", "tool: ping"

Say = Callable[[str], None]


@dataclass(frozen=True)
class BenchPaths:
    """Where the bench talks to and writes to."""

    bootstrap: str
    mongo_uri: str
    out_dir: Path  # results (JSON, PNG)
    work_dir: Path  # service logs and pid files of this run
    infra_pids: Mapping[str, int] = field(default_factory=dict)  # broker, database (for CPU/RSS)
    kafka_version: str | None = None
    latest_png: Path | None = None  # also copy the plot here (full runs)


class _Clock:
    def __init__(self, say: Say) -> None:
        self.t0 = time.monotonic()
        self._say = say

    def __call__(self, text: str) -> None:
        self._say(f"[{time.monotonic() - self.t0:6.1f}s] {text}")


class _RssWatch:
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

    def __enter__(self) -> _RssWatch:
        self._task = asyncio.get_running_loop().create_task(self._loop())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
        self._sample()


def _rss_now(pids: Mapping[str, int]) -> dict[str, float]:
    return {name: round(v, 1) for name, pid in pids.items() if (v := rss_mib(pid)) is not None}


async def _mongo_build(uri: str) -> dict[str, Any]:
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, serverSelectionTimeoutMS=5000)
    try:
        info: dict[str, Any] = await client.admin.command("buildInfo")
        with contextlib.suppress(Exception):
            status = await client.admin.command("serverStatus")
            if status.get("ferretdbVersion"):
                info["ferretdb"] = {"version": status["ferretdbVersion"]}
        return info
    except Exception:
        return {}
    finally:
        await client.close()


# -- phases -------------------------------------------------------------------------------


async def _floor(paths: BenchPaths, config: BenchConfig, say: Say) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for kind, path in (("answer", ANSWER_PATH), ("tool", TOOL_PATH)):
        relay = await measure_relay(paths.bootstrap, path.hops, config.floor_samples)
        mongo = await measure_mongo(paths.mongo_uri, path, config.floor_samples)
        result[kind] = {
            **path.as_dict(),
            "relay_ms": relay.as_dict(), "mongo_ms": mongo.as_dict(),
            "floor_p50_ms": round(relay.p50 + mongo.p50, 3),
            "floor_p99_ms": round(relay.p99 + mongo.p99, 3),
        }
        say(f"floor, {kind} path: {path.hops} hops p50 {relay.p50:.1f} ms (p99 {relay.p99:.1f}); "
            f"{path.round_trips} MongoDB round trips p50 {mongo.p50:.1f} ms (p99 {mongo.p99:.1f})")
    return result


async def _warm(client: MindstreamClient, config: BenchConfig, say: Say) -> None:
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


async def _latency(client: MindstreamClient, config: BenchConfig, layout: Layout, paths: BenchPaths,
                   floor: Mapping[str, Any], say: Say) -> tuple[dict[str, Any], list[str]]:
    out: dict[str, Any] = {}
    run_ids: list[str] = []
    raw: dict[str, list[load.RunSample]] = {}
    for kind, agent, text in (("answer", AGENT_ANSWER, TEXT_ANSWER), ("tool", AGENT_TOOL, TEXT_TOOL)):
        started = time.monotonic()
        samples: list[load.RunSample] = []
        while len(samples) < config.latency_runs and time.monotonic() - started < config.latency_max_s:
            samples += await load.sequential(client, agent, text, 1, timeout=config.run_timeout_s)
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


async def _ramp(client: MindstreamClient, config: BenchConfig, pids: Mapping[str, int],
                model: ModelServer, say: Say) -> list[dict[str, Any]]:
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
        entry["run_ids"] = [s.run_id for s in result.samples]
        entry["load_average"] = load_average()
        steps.append(entry)
        ok = is_sustained(entry, config.bound_ms)
        lat = result.latency
        say(f"  {rate:>6g} runs/s offered: {entry['achieved_rate']:>6.1f} done/s, p50 {lat.p50:.0f} ms, "
            f"p99 {lat.p99:.0f} ms, timeouts {entry['timeouts']}{'' if ok else '  <- over the bound'}")
        return ok

    for rate in config.rates:
        if steps and time.monotonic() - began + config.step_s * 1.5 > config.phase_budget_s:
            say("  (time budget of the phase reached)")
            break
        if await step(rate):
            last_good = rate
        else:
            first_bad = rate
            break
    if (config.bisect and last_good is not None and first_bad is not None
            and steps[-1]["timeouts"] == 0
            and time.monotonic() - began + config.step_s * 1.5 <= config.phase_budget_s):
        middle = round((last_good + first_bad) / 2)
        if last_good < middle < first_bad:
            await step(float(middle))
    return steps


async def _completeness(paths: BenchPaths, layout: Layout, run_ids: list[str]) -> dict[str, Any]:
    records = await read_topics(paths.bootstrap, [RUNS_COMPLETED.physical(layout.prefix)])
    return load.check_completeness(run_ids, records).as_dict()


async def _throughput_phase(stack: BenchStack, paths: BenchPaths, config: BenchConfig, layout: Layout,
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
    async with MindstreamClient(paths.bootstrap, topic_prefix=layout.prefix,
                                client_id=f"bench-{layout.prefix.rstrip('.')}") as client:
        await _warm(client, config, say)
        idle = _rss_now({**service_pids, **paths.infra_pids})
        if floor is not None:
            say("phase: latency at low load (one run at a time)")
            report["latency"], ids = await _latency(client, config, layout, paths, floor, say)
            run_ids += ids
        say(f"phase: {'throughput' if replicas == 1 else 'scaling'} -- open-loop ramp, "
            f"{config.step_s:g}s per step, until p99 > {config.bound_ms:g} ms")
        with _RssWatch({**service_pids, **paths.infra_pids}, config.rss_interval_s) as watch:
            steps = await _ramp(client, config, pids, stack.model, say)
    for s in steps:
        run_ids += s.pop("run_ids")
    dead = stack.dead()
    completeness = await _completeness(paths, layout, run_ids)
    say(f"completeness: {completeness['submitted']} runs, {completeness['exactly_one_completion']} with "
        f"exactly one RunCompleted, lost {completeness['lost']}, conflicting {completeness['conflicting']}"
        + (f"; DIED: {', '.join(dead)}" if dead else ""))
    return {
        "replicas": replicas, "partitions": layout.partitions, "bound_ms": config.bound_ms,
        "workload": f"{AGENT_ANSWER} (one model call, no tool), a new session per run",
        "steps": steps,
        "sustained_runs_per_s": sustained_rate(steps, config.bound_ms),
        "completeness": completeness,
        "services_died": dead,
        "rss_idle_mib": idle,
        "rss_load_max_mib": {k: round(v, 1) for k, v in watch.peak.items()},
    }


# -- the whole bench ----------------------------------------------------------------------------


def _header(config: BenchConfig, paths: BenchPaths, now: datetime, mongo_build: dict[str, Any],
            ) -> dict[str, Any]:
    return {
        "schema": "mindstream.bench/1", "mode": config.mode, "started_at": now.isoformat(),
        "machine": describe(kafka_version=paths.kafka_version, mongo_build=mongo_build),
        "settings": {
            **config.as_dict(),
            "model": "scripted OpenAI-compatible server, zero think time, streamed answers",
            "tool": "noop (returns at once)",
            "producer": "acks=all, idempotence on (services and floor alike)",
            "consumer": "offset committed after the effect (services and floor alike)",
            "service_defaults": {"reasoning_consumer_concurrency": 4,
                                 "memory_consumer_concurrency": 4, "tools_consumer_concurrency": 3},
        },
    }


async def _phases(report: dict[str, Any], stack: BenchStack, paths: BenchPaths, config: BenchConfig,
                  say: Say, tag: str, layouts: list[Layout]) -> None:
    say("phase: floor (raw aiokafka relay, raw MongoDB round trips)")
    report["floor"] = await _floor(paths, config, say)

    say(f"phase: start services (1 per service, {config.partitions} partitions)")
    layout = Layout.fresh(tag, "a", config.partitions)
    layouts.append(layout)
    report["throughput"] = await _throughput_phase(
        stack, paths, config, layout, 1, say, floor=report["floor"], report=report)
    stack.stop()
    await stack.drop(layout)
    if not config.scaling:
        report["scaling"] = {"skipped": True}
        return
    say(f"phase: scaling (restart with {config.scaling_replicas} per service, "
        f"{config.scaling_partitions} partitions)")
    layout = Layout.fresh(tag, "b", config.scaling_partitions)
    layouts.append(layout)
    report["scaling"] = await _throughput_phase(
        stack, paths, config, layout, config.scaling_replicas, say, floor=None, report=report)
    base = report["throughput"]["sustained_runs_per_s"]
    report["scaling"]["capacity_vs_one_replica_x"] = round(
        ratio(report["scaling"]["sustained_runs_per_s"], base), 2)
    stack.stop()
    await stack.drop(layout)


def _memory(report: dict[str, Any], config: BenchConfig) -> dict[str, Any]:
    return {
        "idle_mib": report.get("throughput", {}).get("rss_idle_mib", {}),
        "under_load_max_mib": report.get("throughput", {}).get("rss_load_max_mib", {}),
        "scaled_idle_mib": report.get("scaling", {}).get("rss_idle_mib", {}),
        "scaled_under_load_max_mib": report.get("scaling", {}).get("rss_load_max_mib", {}),
        "source": "VmRSS from /proc/<pid>/status; idle after warm-up, load max sampled every "
                  f"{config.rss_interval_s:g}s during the ramp",
    }


async def run_bench(config: BenchConfig, paths: BenchPaths,
                    say: Say = print) -> tuple[dict[str, Any], Path, Path]:
    """Run every phase, write ``<stamp>.json`` and ``<stamp>.png``, print the table."""
    clock = _Clock(say)
    now = datetime.now(UTC)
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    report = _header(config, paths, now, await _mongo_build(paths.mongo_uri))
    m = report["machine"]
    clock(f"mindstream bench ({config.mode}): {m['cores']} cores, {m['ram_mib']} MiB, {m['cpu_model']}; "
          f"load average {m['load_average_at_start']}")
    paths.work_dir.mkdir(parents=True, exist_ok=True)
    model = ModelServer.start(paths.work_dir / "scripted-model.log")
    stack = BenchStack(paths.bootstrap, paths.mongo_uri, model, paths.work_dir / "run",
                       paths.work_dir / "logs")
    layouts: list[Layout] = []
    try:
        await _phases(report, stack, paths, config, clock, now.strftime("%H%M%S"), layouts)
    except BaseException as exc:
        report["error"] = f"{type(exc).__name__}: {exc}"[:2000]
        with contextlib.suppress(Exception):  # what was measured so far is still worth keeping
            report["memory"] = _memory(report, config)
            path, _ = write_results(report, paths.out_dir, stamp + "-failed")
            say(f"partial results: {path}")
        raise
    finally:
        stack.stop()
        model.stop()
        for layout in layouts:
            with contextlib.suppress(Exception):
                await stack.drop(layout)
    report["memory"] = _memory(report, config)
    report["targets"] = targets(report)
    report["finished_at"] = datetime.now(UTC).isoformat()
    report["duration_s"] = round(time.monotonic() - clock.t0, 1)
    json_path, png_path = write_results(report, paths.out_dir, stamp)
    if paths.latest_png is not None:
        shutil.copyfile(png_path, paths.latest_png)
    say("")
    say(format_table(report))
    say("")
    say(f"results: {json_path}")
    say(f"plot:    {png_path}")
    return report, json_path, png_path
