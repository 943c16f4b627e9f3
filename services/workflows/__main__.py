"""``mindstream serve workflows`` / ``python -m services.workflows`` (see :mod:`shared.entrypoint`)."""

from __future__ import annotations

from services.workflows.app import build
from services.workflows.settings import WorkflowsSettings
from shared.entrypoint import serve


def main() -> int:
    return serve("workflows", WorkflowsSettings, build)


if __name__ == "__main__":
    raise SystemExit(main())
