"""``mindstream schemas export [--check]``: the published contracts, generated and checked."""

from __future__ import annotations

import argparse
from pathlib import Path

from mindstream.cli.errors import CliError

REPO_ROOT = Path(__file__).resolve().parents[2]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    schemas = sub.add_parser("schemas", help="JSON Schema and AsyncAPI for every topic")
    schemas_sub = schemas.add_subparsers(dest="schemas_command", metavar="ACTION", required=True)
    export = schemas_sub.add_parser("export", help="write schemas/published/ (or check it with --check)")
    export.add_argument("--check", action="store_true", help="exit 1 if the files are out of date")
    export.add_argument("--root", type=Path, default=REPO_ROOT, help=argparse.SUPPRESS)
    export.set_defaults(handler=_export)


def _export(args: argparse.Namespace) -> int:
    from schemas.export import check_all, export_all

    if args.check:
        problems = check_all(args.root)
        for line in problems:
            print(line)
        if problems:
            raise CliError(
                f"{len(problems)} contract problem(s): run `mindstream schemas export` for drift; "
                "a breaking change needs a new .vN topic and an upcaster", exit_code=1)
        print("published contracts are up to date and compatible")
        return 0
    for path in export_all(args.root):
        print(f"wrote {path.relative_to(args.root)}")
    return 0
