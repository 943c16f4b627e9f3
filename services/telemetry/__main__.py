"""``mindstream serve telemetry`` / ``python -m services.telemetry`` (see :mod:`shared.entrypoint`)."""

from __future__ import annotations

from services.telemetry.app import build
from services.telemetry.settings import TelemetrySettings
from shared.entrypoint import serve


def main() -> int:
    return serve("telemetry", TelemetrySettings, build)


if __name__ == "__main__":
    raise SystemExit(main())
