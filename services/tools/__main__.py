"""``mindstream serve tools`` / ``python -m services.tools`` (see :mod:`shared.entrypoint`)."""

from __future__ import annotations

from services.tools.app import build
from services.tools.errors import RegistryError
from services.tools.settings import ToolsSettings
from shared.entrypoint import serve


def main() -> int:
    return serve("tools", ToolsSettings, build, refusals=(RegistryError,))


if __name__ == "__main__":
    raise SystemExit(main())
