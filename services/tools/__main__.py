"""``python -m services.tools`` / ``mindstream serve tools``."""

from __future__ import annotations

import asyncio
import sys

from pydantic import ValidationError
from pydantic_settings import SettingsError

from services.tools.errors import RegistryError


def main() -> int:
    from services.tools.app import build
    from services.tools.settings import ToolsSettings
    from shared.observability.logging import configure_logging
    from shared.service import run_until_signalled
    from shared.settings import KafkaSettings, MongoSettings, ObservabilitySettings

    try:
        settings = ToolsSettings()
        kafka = KafkaSettings()
        mongo = MongoSettings()
        observability = ObservabilitySettings()
    except ValidationError as exc:
        print(f"mindstream tools: invalid settings: {_one_line(exc)}", file=sys.stderr)
        return 2
    except SettingsError as exc:
        print(f"mindstream tools: invalid settings: {exc}", file=sys.stderr)
        return 2
    configure_logging("tools", observability.log_level)
    try:
        runtime = build(settings, kafka, mongo, http_host=observability.http_host)
        asyncio.run(run_until_signalled(runtime))
    except RegistryError as exc:
        print(f"mindstream tools: {exc}", file=sys.stderr)
        return 2
    return 0


def _one_line(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or exc.title
        parts.append(f"{exc.title}.{where}: {err['msg']}" if err["loc"] else err["msg"])
    return "; ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
