"""``mindstream dev up|down|status``: local Kafka and MongoDB-wire server."""

from __future__ import annotations

import argparse

from mindstream.cli.errors import CliError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dev = sub.add_parser("dev", help="local infrastructure (Kafka, MongoDB-wire server)")
    dev_sub = dev.add_subparsers(dest="dev_command", metavar="ACTION", required=True)
    dev_sub.add_parser("up", help="install if needed, start, and wait until ready").set_defaults(handler=_up)
    dev_sub.add_parser("down", help="stop what `dev up` started").set_defaults(handler=_down)
    dev_sub.add_parser("status", help="show what is running; exit 1 if anything is down").set_defaults(
        handler=_status)


def _up(_args: argparse.Namespace) -> int:
    from mindstream import dev

    try:
        ends = dev.up()
    except dev.DevError as exc:
        raise CliError(str(exc)) from exc
    print(f"KAFKA_BOOTSTRAP_SERVERS={ends.kafka_bootstrap}")
    print(f"MONGODB_URI={ends.mongo_uri}")
    return 0


def _down(_args: argparse.Namespace) -> int:
    from mindstream import dev

    stopped = dev.down()
    print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
    return 0


def _status(_args: argparse.Namespace) -> int:
    from mindstream import dev

    rows = dev.status()
    for row in rows:
        print(f"{row.name:<6} {row.state:<8} {row.detail}")
    return 1 if any(row.state == "down" for row in rows) else 0
