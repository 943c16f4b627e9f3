"""``python -m services.control_plane`` / ``mindstream serve control-plane``."""

from __future__ import annotations

import asyncio
import sys

from pydantic import ValidationError

from services.control_plane.app import build
from services.control_plane.settings import ControlPlaneSettings
from shared.observability.logging import configure_logging
from shared.service import run_until_signalled
from shared.settings import KafkaSettings, MongoSettings, ObservabilitySettings


def main() -> int:
    try:
        settings = ControlPlaneSettings()
        kafka, mongo, obs = KafkaSettings(), MongoSettings(), ObservabilitySettings()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        print(f"control-plane: invalid setting {where}: {first.get('msg')}", file=sys.stderr)
        return 2
    configure_logging("control-plane", obs.log_level)
    runtime = build(settings, kafka, mongo, http_host=obs.http_host)
    try:
        asyncio.run(run_until_signalled(runtime))
    except OSError as exc:
        print(f"control-plane: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
