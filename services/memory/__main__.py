"""``mindstream serve memory`` / ``python -m services.memory`` (see :mod:`shared.entrypoint`)."""

from __future__ import annotations

from services.memory.app import build
from services.memory.settings import MemoryServiceSettings
from shared.entrypoint import serve


def main() -> int:
    return serve("memory", MemoryServiceSettings, build)


if __name__ == "__main__":
    raise SystemExit(main())
