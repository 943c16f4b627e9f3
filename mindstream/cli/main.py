"""``mindstream`` entry point: parse, dispatch, and turn known errors into one line.

Exit codes: 0 success, 1 the command ran and reported failure (a check
failed, a run failed), 2 bad usage or configuration, 130 interrupted.
Each subcommand group lives in its own module and registers itself here.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from mindstream.cli import (
    agents_cmd,
    audit_cmd,
    bench_cmd,
    canary_cmd,
    demo_cmd,
    dev_cmd,
    eval_cmd,
    memory_cmd,
    run_cmd,
    schemas_cmd,
    serve_cmd,
    tokens_cmd,
    tools_cmd,
    topics_cmd,
    workflows_cmd,
)
from mindstream.cli.errors import CliError

Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]

GROUPS: list[Register] = [
    dev_cmd.register,
    topics_cmd.register,
    schemas_cmd.register,
    serve_cmd.register,
    run_cmd.register,
    demo_cmd.register,
    memory_cmd.register,
    tools_cmd.register,
    audit_cmd.register,
    tokens_cmd.register,
    agents_cmd.register,
    workflows_cmd.register,
    bench_cmd.register,
    eval_cmd.register,
    canary_cmd.register,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mindstream",
        description="Run multi-agent AI systems as services on versioned Kafka topics.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in GROUPS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command != "serve":  # a service configures its own (JSON) logging
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        # Client libraries log connection retries as errors; the CLI reports failures itself.
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except CliError as exc:
        print(f"mindstream: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("mindstream: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
