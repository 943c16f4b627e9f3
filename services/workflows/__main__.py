"""``mindstream serve workflows``: read settings (the only place env is read), run."""

from __future__ import annotations

import asyncio
import sys

from pydantic import ValidationError

from services.workflows.app import build
from services.workflows.settings import WorkflowsSettings
from shared.observability.logging import configure_logging
from shared.service import run_until_signalled
from shared.settings import KafkaSettings, MongoSettings, ObservabilitySettings


def _one_line(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ())) or "settings"
    return f"{exc.title}: {where}: {err.get('msg')}"


def main() -> int:
    try:
        settings = WorkflowsSettings()
        kafka, mongo, obs = KafkaSettings(), MongoSettings(), ObservabilitySettings()
        configure_logging("workflows", settings.log_level or obs.log_level)
    except ValidationError as exc:
        print(f"mindstream workflows: invalid setting: {_one_line(exc)}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"mindstream workflows: invalid setting: {exc}", file=sys.stderr)
        return 2
    runtime = build(settings, kafka, mongo, http_host=obs.http_host)
    asyncio.run(run_until_signalled(runtime))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
