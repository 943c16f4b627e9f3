"""``python -m services.memory`` / ``mindstream serve memory``: run the memory service."""

from __future__ import annotations

import asyncio
import sys

from pydantic import ValidationError


def _one_line(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ())) or exc.title
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{exc.title}: {where}: {first.get('msg', 'invalid')}{more}"


def main() -> int:
    from services.memory.app import build
    from services.memory.settings import MemoryServiceSettings
    from shared.observability.logging import configure_logging
    from shared.service import run_until_signalled
    from shared.settings import KafkaSettings, MongoSettings, ObservabilitySettings

    try:
        settings = MemoryServiceSettings()
        kafka, mongo, observability = KafkaSettings(), MongoSettings(), ObservabilitySettings()
        configure_logging("memory", observability.log_level)
        runtime = build(settings, kafka, mongo, http_host=observability.http_host)
    except ValidationError as exc:
        print(f"memory: invalid settings: {_one_line(exc)}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"memory: invalid settings: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(run_until_signalled(runtime))
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
