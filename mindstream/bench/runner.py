"""The bench, phase by phase: floor, latency, throughput, scaling, memory; then the report.

Each phase prints as it goes. Services run as separate processes on a
bench-only topic prefix and database, which are deleted at the end; the
model is the scripted server with zero think time and the only tool a no-op,
so what is measured is mindstream itself (and the broker and database it
stands on).
"""

from __future__ import annotations

import contextlib
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mindstream.bench.config import BenchConfig
from mindstream.bench.dbstats import indexed_queries
from mindstream.bench.machine import describe
from mindstream.bench.paths import BenchPaths, Say
from mindstream.bench.phases import measure_floor, throughput_phase
from mindstream.bench.report import format_table, targets, write_results
from mindstream.bench.stack import BenchStack, Layout, ModelServer
from mindstream.bench.stats import ratio

__all__ = ["BenchPaths", "run_bench"]


class _Clock:
    def __init__(self, say: Say) -> None:
        self.t0 = time.monotonic()
        self._say = say

    def __call__(self, text: str) -> None:
        self._say(f"[{time.monotonic() - self.t0:6.1f}s] {text}")


async def _mongo_build(uri: str) -> dict[str, Any]:
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, serverSelectionTimeoutMS=5000)
    try:
        info: dict[str, Any] = await client.admin.command("buildInfo")
        with contextlib.suppress(Exception):
            status = await client.admin.command("serverStatus")
            if status.get("ferretdbVersion"):
                info["ferretdb"] = {"version": status["ferretdbVersion"]}
        info["indexed_queries"] = await indexed_queries(uri)
        return info
    except Exception:  # the version is descriptive, not required
        return {}
    finally:
        await client.close()


def _service_defaults() -> dict[str, Any]:
    """Settings of the services that shape capacity, as the bench ran them (defaults)."""
    from services.memory.settings import MemoryServiceSettings
    from services.reasoning.settings import ReasoningSettings
    from services.tools.settings import ToolsSettings

    def default(cls: Any, name: str) -> Any:
        return cls.model_fields[name].default

    return {
        "reasoning_consumer_concurrency": default(ReasoningSettings, "consumer_concurrency"),
        "reasoning_model_max_concurrency": default(ReasoningSettings, "model_max_concurrency"),
        "reasoning_delta_flush_ms": default(ReasoningSettings, "delta_flush_ms"),
        "memory_consumer_concurrency": default(MemoryServiceSettings, "consumer_concurrency"),
        "tools_consumer_concurrency": default(ToolsSettings, "consumer_concurrency"),
    }


def _header(config: BenchConfig, paths: BenchPaths, now: datetime, mongo_build: dict[str, Any],
            ) -> dict[str, Any]:
    return {
        "schema": "mindstream.bench/1", "mode": config.mode, "started_at": now.isoformat(),
        "machine": describe(kafka_version=paths.kafka_version, mongo_build=mongo_build),
        "settings": {
            **config.as_dict(),
            "model": "scripted OpenAI-compatible server, zero think time, streamed answers",
            "tool": "noop (returns at once)",
            "producer": f"acks=all, idempotence on, linger {paths.linger_ms} ms (services and floor alike)",
            "consumer": "offset committed after the effect (services and floor alike)",
            "databases": "one per service (no service reads another's collections)"
                         if config.db_per_service else "one shared by every service",
            "service_defaults": _service_defaults(),
        },
    }


async def _phases(report: dict[str, Any], stack: BenchStack, paths: BenchPaths, config: BenchConfig,
                  say: Say, tag: str, layouts: list[Layout]) -> None:
    say("phase: floor (raw aiokafka relay, raw MongoDB round trips)")
    report["floor"] = await measure_floor(paths, config, say)

    say(f"phase: start services (1 per service, {config.partitions} partitions)")
    layout = Layout.fresh(tag, "a", config.partitions, db_per_service=config.db_per_service)
    layouts.append(layout)
    report["throughput"] = await throughput_phase(
        stack, paths, config, layout, 1, say, floor=report["floor"], report=report)
    stack.stop()
    await stack.drop(layout)
    if not config.scaling:
        report["scaling"] = {"skipped": True}
        return
    say(f"phase: scaling (restart with {config.scaling_replicas} per service, "
        f"{config.scaling_partitions} partitions)")
    layout = Layout.fresh(tag, "b", config.scaling_partitions,
                          db_per_service=config.db_per_service)
    layouts.append(layout)
    report["scaling"] = await throughput_phase(
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
                       paths.work_dir / "logs",
                       db_profile=paths.work_dir / "dbprofile" if config.db_profile else None)
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
