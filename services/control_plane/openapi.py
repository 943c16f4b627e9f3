"""The published OpenAPI document: ``python -m services.control_plane.openapi --check|--write``.

``services/control_plane/openapi.json`` is generated from the routes, like
the JSON Schemas of the message contracts; a unit test fails when it
drifts, so the API's clients see every change in review.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from services.control_plane.api import create_api

__all__ = ["SPEC_PATH", "render", "spec"]

SPEC_PATH = Path(__file__).resolve().parent / "openapi.json"


def spec() -> dict[str, Any]:
    return create_api().openapi()


def render() -> str:
    return json.dumps(spec(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.control_plane.openapi")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="exit 1 if openapi.json is stale")
    mode.add_argument("--write", action="store_true", help="regenerate openapi.json")
    args = parser.parse_args(argv)
    text = render()
    if args.write:
        SPEC_PATH.write_text(text)
        print(f"wrote {SPEC_PATH}")
        return 0
    current = SPEC_PATH.read_text() if SPEC_PATH.exists() else ""
    if current != text:
        print(f"{SPEC_PATH} is stale; run: python -m services.control_plane.openapi --write",
              file=sys.stderr)
        return 1
    print(f"{SPEC_PATH} is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
