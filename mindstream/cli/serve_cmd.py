"""``mindstream serve <service>``: the one way a service process starts."""

from __future__ import annotations

import argparse
import importlib

SERVICES = ("reasoning", "tools", "memory", "telemetry", "control-plane", "workflows")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = sub.add_parser("serve", help="run one service in the foreground")
    serve.add_argument("service", choices=SERVICES)
    serve.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    module = importlib.import_module(f"services.{args.service.replace('-', '_')}.__main__")
    result: int = module.main()
    return result
