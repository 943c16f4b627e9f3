"""``mindstream run "text" --agent A``: publish a request and watch the run live."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from mindstream.cli.errors import CliError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = sub.add_parser("run", help="run an agent and stream its events")
    run.add_argument("text", help="the user's message")
    run.add_argument("--agent", "-a", required=True, help="agent id, optionally pinned: name@3")
    run.add_argument("--session", "-s", default=None, help="session id (default: a new session)")
    run.add_argument("--user", "-u", default="cli-user", help="user id (memories follow the user)")
    run.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the result")
    run.add_argument("--quiet", "-q", action="store_true", help="print only the final answer")
    run.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from aiokafka.errors import KafkaError

    from mindstream.client import RunTimeoutError

    try:
        return asyncio.run(_stream(args))
    except RunTimeoutError as exc:
        raise CliError(f"{exc} (are the services running? `mindstream dev status`)", 1) from exc
    except (KafkaError, OSError) as exc:
        raise CliError(f"cannot reach Kafka: {exc} (is it running? `mindstream dev up`)") from exc
    except RuntimeError as exc:  # the client's own checks, e.g. topics missing
        raise CliError(str(exc)) from exc


async def _stream(args: argparse.Namespace) -> int:
    from mindstream.cli.render import EventPrinter
    from mindstream.client import MindstreamClient
    from schemas.runs import RunCompleted

    printer = EventPrinter(sys.stdout, quiet=args.quiet)
    started = time.perf_counter()
    async with MindstreamClient() as client:
        async for item in client.stream(args.agent, args.text, session=args.session, user=args.user,
                                        timeout=args.timeout):
            if isinstance(item, RunCompleted):
                printer.final(item, time.perf_counter() - started)
                return 0 if item.status.value == "completed" else 1
            printer.event(item)
    return 1
