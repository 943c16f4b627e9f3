"""``mindstream serve reasoning`` / ``python -m services.reasoning`` (see :mod:`shared.entrypoint`)."""

from __future__ import annotations

from services.reasoning.app import build
from services.reasoning.settings import ReasoningSettings
from shared.entrypoint import serve


def main() -> int:
    return serve("reasoning", ReasoningSettings, build)


if __name__ == "__main__":
    raise SystemExit(main())
