"""``mindstream serve control-plane`` / ``python -m services.control_plane``
(see :mod:`shared.entrypoint`)."""

from __future__ import annotations

from services.control_plane.app import build
from services.control_plane.settings import ControlPlaneSettings
from shared.entrypoint import serve


def main() -> int:
    return serve("control-plane", ControlPlaneSettings, build)


if __name__ == "__main__":
    raise SystemExit(main())
