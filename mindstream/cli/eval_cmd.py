"""``mindstream eval run SUITE --agent A[@N]``: score an agent on a suite of cases.

Every case runs through the real system (the request goes to Kafka like any
client's). Exit 0 only when every threshold of the suite holds, 1 when one does
not (failing cases are listed with their run ids), 2 for a bad suite or setup.
Results are stored in the control plane's ``eval_results`` collection (skip with
``--no-store``) and shown by ``GET /api/v1/evals?agent=A`` and the dashboard.

``mindstream eval list [--agent A]`` shows the recent eval runs and the pass rate
per agent version.

A rubric check needs a grader model: ``--grader-model`` (or
``MINDSTREAM_EVAL_GRADER_MODEL``) on ``--grader-base-url`` (or
``MINDSTREAM_EVAL_GRADER_BASE_URL``, else ``MINDSTREAM_MODEL_BASE_URL``, else
OpenAI), key from ``MINDSTREAM_EVAL_GRADER_API_KEY`` or ``OPENAI_API_KEY``.
Without one, rubric checks are skipped and the report says so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from mindstream.cli.errors import CliError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ev = sub.add_parser("eval", help="run eval suites against agents; show results")
    ev_sub = ev.add_subparsers(dest="eval_command", metavar="ACTION", required=True)
    run = ev_sub.add_parser("run", help="run a suite through the system and score it")
    run.add_argument("suite", help="a suite YAML file (see evals/)")
    run.add_argument("--agent", "-a", default=None,
                     help="agent to evaluate, optionally pinned: name@3 (default: the suite's)")
    run.add_argument("--concurrency", "-c", type=int, default=None,
                     help="cases at a time (default: the suite's, else 4)")
    run.add_argument("--timeout", type=float, default=None, help="seconds per run")
    run.add_argument("--grader-model", default=None, help="model that grades rubric checks")
    run.add_argument("--grader-base-url", default=None, help="its OpenAI-compatible endpoint")
    run.add_argument("--json", dest="json_path", type=Path, default=None,
                     help="also write the full report as JSON to this file")
    run.add_argument("--no-store", action="store_true",
                     help="do not record the results in MongoDB")
    run.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    run.set_defaults(handler=_run)
    ls = ev_sub.add_parser("list", help="recent eval runs and the pass rate per agent version")
    ls.add_argument("--agent", "-a", default=None, help="only this agent")
    ls.set_defaults(handler=_list)


def _grader(args: argparse.Namespace) -> Any:
    model = args.grader_model or os.environ.get("MINDSTREAM_EVAL_GRADER_MODEL")
    if not model:
        return None
    from mindstream.evals.grader import OpenAIGrader

    base_url = (args.grader_base_url or os.environ.get("MINDSTREAM_EVAL_GRADER_BASE_URL")
                or os.environ.get("MINDSTREAM_MODEL_BASE_URL") or "https://api.openai.com/v1")
    key = (os.environ.get("MINDSTREAM_EVAL_GRADER_API_KEY") or os.environ.get("OPENAI_API_KEY")
           or "unused")
    return OpenAIGrader(base_url=base_url, model=model, api_key=key)


def _mongo() -> Any:
    from pymongo import AsyncMongoClient

    from shared.settings import MongoSettings

    settings = MongoSettings()
    client: Any = AsyncMongoClient(settings.uri.get_secret_value(), tz_aware=True,
                                   serverSelectionTimeoutMS=settings.timeout_ms)
    return client, client[settings.database]


async def _store(report: Any) -> str:
    from mindstream.evals.report import records_of
    from services.control_plane.evals import EvalStore

    client, db = _mongo()
    try:
        store = EvalStore(db)
        await store.ensure_indexes()
        await store.record(*records_of(report))
    finally:
        await client.close()
    return db.name


async def _evaluate(args: argparse.Namespace, suite: Any) -> tuple[Any, str | None]:
    from mindstream.evals.progress import Progress
    from mindstream.evals.runner import run_suite

    if args.timeout is not None:
        suite = suite.model_copy(update={"timeout_s": args.timeout})
    progress = None if args.quiet else Progress(len(suite.cases), sys.stderr,
                                                label=f"eval {suite.suite}")
    grader = _grader(args)
    try:
        report = await run_suite(
            suite, agent=args.agent, concurrency=args.concurrency, grader=grader,
            on_result=(lambda r: progress.advance(passed=r.passed)) if progress else None)
    finally:
        if grader is not None:
            await grader.aclose()
    stored = None
    if not args.no_store:
        try:
            stored = await _store(report)
        except Exception as exc:  # the verdict stands even when the record cannot be written
            print(f"mindstream: warning: results not stored in MongoDB: {exc}", file=sys.stderr)
    return report, stored


def _run(args: argparse.Namespace) -> int:
    from aiokafka.errors import KafkaError

    from mindstream.evals.report import as_json, print_report
    from mindstream.evals.suite import SuiteError, load_suite

    try:
        suite = load_suite(args.suite)
    except SuiteError as exc:
        raise CliError(str(exc)) from exc
    if args.concurrency is not None and not 1 <= args.concurrency <= 64:
        raise CliError("--concurrency must be between 1 and 64")
    if not (args.agent or suite.agent):
        raise CliError(f"{args.suite}: no agent to evaluate: give --agent or set `agent:`")
    try:
        report, stored = asyncio.run(_evaluate(args, suite))
    except (KafkaError, OSError) as exc:
        raise CliError(f"cannot reach Kafka: {exc} (is it running? `mindstream dev up`)") from exc
    print_report(report, sys.stdout)
    if stored:
        print(f"results stored in {stored}.eval_results (eval {report.eval_id})")
    if args.json_path is not None:
        args.json_path.write_text(json.dumps(as_json(report), indent=2) + "\n", encoding="utf-8")
    return 0 if report.verdict.ok else 1


async def _recent(agent: str | None) -> tuple[list[Any], list[Any]]:
    from services.control_plane.evals import EvalStore

    client, db = _mongo()
    try:
        store = EvalStore(db)
        return await store.runs(agent, limit=20), await store.trend(agent)
    finally:
        await client.close()


def _list(args: argparse.Namespace) -> int:
    from pymongo.errors import PyMongoError

    try:
        runs, trend = asyncio.run(_recent(args.agent))
    except PyMongoError as exc:
        raise CliError(f"cannot read eval results from MongoDB: {exc}") from exc
    if not runs:
        print("no eval runs recorded" + (f" for {args.agent}" if args.agent else ""))
        return 0
    print(f"{'when':<20} {'suite':<18} {'agent':<18} {'passed':>9}  verdict  eval")
    for r in runs:
        ref = r["agent"] + (f"@{r['agent_version']}" if r.get("agent_version") else "")
        print(f"{r['at']:%Y-%m-%d %H:%M:%S}  {r['suite']:<18} {ref:<18} "
              f"{r['passed']:>4}/{r['cases']:<4}  {'PASS' if r['ok'] else 'FAIL':<7}  {r['eval_id']}")
    print("\npass rate per version:")
    for row in trend:
        points = "  ".join(f"@{p['version']} {p['pass_rate']:.0%}" for p in row["versions"])
        print(f"  {row['agent']:<18} {row['suite']:<18} {points}")
    return 0
