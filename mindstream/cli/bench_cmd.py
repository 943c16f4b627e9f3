"""``mindstream bench [--quick]``: measure latency, overhead, throughput, scaling and memory.

Starts the local infrastructure if needed (like ``make bench`` does), then every
service as its own process on a bench-only topic prefix and database. Results
go to ``bench/results/<timestamp>.json`` with a PNG plot beside it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mindstream.cli.errors import CliError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench = sub.add_parser("bench", help="benchmark the running system (about 8 minutes; --quick: 2)")
    bench.add_argument("--quick", action="store_true", help="short smoke form (under 2 minutes)")
    bench.add_argument("--out", type=Path, default=Path("bench/results"),
                       help="folder for the results JSON and PNG (default: bench/results)")
    bench.add_argument("--bound-ms", type=float, default=None,
                       help="p99 a sustained rate must stay under (default 250)")
    bench.add_argument("--rates", default=None,
                       help="comma-separated offered loads to climb, runs/s (default: built in)")
    bench.add_argument("--step-seconds", type=float, default=None, help="duration of each load step")
    bench.add_argument("--no-scaling", action="store_true", help="skip the two-replica phase")
    bench.add_argument("--no-db-profile", action="store_true",
                       help="do not count the services' database commands")
    bench.add_argument("--shared-database", action="store_true",
                       help="one database for every service (default: one per service)")
    bench.set_defaults(handler=_bench)


def _rates(text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        rates = tuple(float(r) for r in text.split(",") if r.strip())
    except ValueError:
        raise CliError(f"--rates: expected numbers separated by commas, got {text!r}") from None
    if not rates or any(r <= 0 for r in rates):
        raise CliError("--rates: every rate must be a positive number")
    return tuple(sorted(rates))


def _bench(args: argparse.Namespace) -> int:
    import asyncio
    import os
    import shutil
    import signal

    from mindstream.bench import FULL, QUICK, BenchPaths, run_bench
    from mindstream.dev import DevSettings, process
    from mindstream.dev import up as dev_up
    from mindstream.dev.errors import DevError
    from shared.settings import KafkaSettings

    base = QUICK if args.quick else FULL
    try:
        config = base.with_overrides(bound_ms=args.bound_ms, rates=_rates(args.rates),
                                     step_s=args.step_seconds,
                                     scaling=False if args.no_scaling else None,
                                     db_profile=False if args.no_db_profile else None,
                                     db_per_service=False if args.shared_database else None)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    settings = DevSettings()
    try:
        ends = dev_up(settings)
    except DevError as exc:
        raise CliError(str(exc)) from exc
    infra: dict[str, int] = {}
    for name, env in (("kafka", "KAFKA_BOOTSTRAP_SERVERS"), ("mongo", "MONGODB_URI")):
        tracked = process.read(settings.run_dir, name)
        if not os.environ.get(env) and tracked is not None and process.alive(tracked):
            infra["kafka-broker" if name == "kafka" else "mongo-server"] = tracked.pid
    work = settings.cache_dir / "bench" / "last"
    for left in sorted((work / "run").glob("*.pid.json")):  # a bench killed outright left these
        process.stop(work / "run", left.name.removesuffix(".pid.json"), timeout_s=10.0)
    shutil.rmtree(work, ignore_errors=True)
    default_out = args.out == Path("bench/results")
    paths = BenchPaths(
        bootstrap=ends.kafka_bootstrap, mongo_uri=ends.mongo_uri, out_dir=args.out, work_dir=work,
        infra_pids=infra,
        kafka_version=None if os.environ.get("KAFKA_BOOTSTRAP_SERVERS") else settings.kafka_version,
        latest_png=args.out.parent / "latest.png" if default_out and config.mode == "full" else None,
        linger_ms=KafkaSettings().linger_ms,
    )
    print(f"infrastructure: {ends.backend}", flush=True)

    async def bench() -> dict[str, Any]:
        # SIGTERM (CI, `timeout`) unwinds like Ctrl-C, so the services and the model
        # server (own sessions, deaf to the terminal) are stopped, not orphaned.
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        result, _, _ = await run_bench(config, paths, say=lambda s: print(s, flush=True))
        return result

    try:
        report = asyncio.run(bench())
    except asyncio.CancelledError:
        raise CliError("bench stopped (SIGTERM); services stopped", exit_code=130) from None
    except (DevError, RuntimeError, OSError) as exc:
        raise CliError(f"bench failed: {exc} (service logs: {work / 'logs'})", exit_code=1) from exc
    lost = any(not (report.get(p) or {}).get("completeness", {"ok": True}).get("ok", True)
               for p in ("throughput", "scaling"))
    return 1 if lost else 0
