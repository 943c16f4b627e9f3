"""The one ``main`` of every service: settings, logging, tracing, run until signalled.

Settings are read here and nowhere else (the environment is the only input).
What goes wrong before the service runs is one line on stderr and exit 2:
a setting the service refuses, a build that refuses its configuration (SASL
without credentials, a broken tool module). A port already taken is exit 1.
Span export is switched on for every service when
``OTEL_EXPORTER_OTLP_ENDPOINT`` (or the service's own endpoint) is set.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Protocol, TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsError

from shared.observability.logging import configure_logging
from shared.observability.tracing import configure_tracing, shutdown_tracing
from shared.service import ServiceRuntime, run_until_signalled
from shared.settings import KafkaSettings, MongoSettings, ObservabilitySettings

__all__ = ["one_line", "serve"]

S = TypeVar("S", bound=BaseSettings)
S_contra = TypeVar("S_contra", bound=BaseSettings, contravariant=True)


class Build(Protocol[S_contra]):
    """A service's ``app.build``."""

    def __call__(self, settings: S_contra, kafka: KafkaSettings, mongo: MongoSettings, *,
                 http_host: str = ...) -> ServiceRuntime: ...


def one_line(exc: ValidationError) -> str:
    """The first problem of a settings error, as ``Model: field: message (and N more)``."""
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first.get("loc", ())) or exc.title
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{exc.title}: {where}: {first.get('msg', 'invalid')}{more}"


class _Exit(Exception):
    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def serve(name: str, settings_type: type[S], build: Build[S], *,
          refusals: tuple[type[Exception], ...] = ()) -> int:
    """Run service ``name`` until SIGTERM/SIGINT; the process exit code.

    ``refusals``: errors of the service's own build or start that mean "this
    configuration cannot run" (reported in one line, exit 2).
    """
    try:
        _serve(name, settings_type, build, refusals)
    except _Exit as exc:
        print(f"mindstream {name}: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    return 0


def _serve(name: str, settings_type: type[S], build: Build[S],
           refusals: tuple[type[Exception], ...]) -> None:
    try:
        settings = settings_type()
        kafka, mongo, obs = KafkaSettings(), MongoSettings(), ObservabilitySettings()
    except ValidationError as exc:
        raise _Exit(f"invalid setting: {one_line(exc)}") from exc
    except (SettingsError, ValueError) as exc:
        raise _Exit(f"invalid setting: {exc}") from exc
    configure_logging(name, getattr(settings, "log_level", None) or obs.log_level)
    refused: tuple[type[Exception], ...] = (ValueError, *refusals)
    try:
        runtime = build(settings, kafka, mongo, http_host=obs.http_host)
    except refused as exc:
        raise _Exit(str(exc)) from exc
    configure_tracing(name, getattr(settings, "otlp_endpoint", None))
    try:
        asyncio.run(run_until_signalled(runtime))
    except refusals as exc:  # found while starting (a tool module that will not load)
        raise _Exit(str(exc)) from exc
    except OSError as exc:  # e.g. the probe port is taken
        raise _Exit(str(exc), code=1) from exc
    finally:
        shutdown_tracing()
