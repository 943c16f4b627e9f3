"""``mindstream serve telemetry`` / ``python -m services.telemetry``."""

from __future__ import annotations

import asyncio
import sys

from pydantic import ValidationError

from services.telemetry.app import build
from services.telemetry.settings import TelemetrySettings
from shared.observability.logging import configure_logging
from shared.observability.tracing import configure_tracing, shutdown_tracing
from shared.service import run_until_signalled
from shared.settings import KafkaSettings, MongoSettings, ObservabilitySettings


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or exc.title
    return f"{exc.title}: {where}: {first['msg']}"


def main() -> int:
    try:
        settings = TelemetrySettings()
        kafka = KafkaSettings()
        mongo = MongoSettings()
        observability = ObservabilitySettings()
    except ValidationError as exc:
        print(f"mindstream telemetry: invalid setting: {_first_error(exc)}", file=sys.stderr)
        return 2
    configure_logging("telemetry", level=observability.log_level)
    try:
        runtime = build(settings, kafka, mongo, http_host=observability.http_host)
    except ValueError as exc:  # e.g. SASL chosen without credentials
        print(f"mindstream telemetry: {exc}", file=sys.stderr)
        return 2
    configure_tracing("telemetry", settings.otlp_endpoint)
    try:
        asyncio.run(run_until_signalled(runtime))
    finally:
        shutdown_tracing()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
