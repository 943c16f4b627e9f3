"""Structured logs: one JSON object per line, with the ids that tie a line to a run.

A line carries ``ts``, ``level``, ``logger``, ``msg``, ``service``, the ids
set by :func:`log_context` (``correlation_id``, ``causation_id``,
``run_id``, ``session_id``, ``trace_id``...), any ``extra=`` fields, and
``exc`` with the traceback when there is one. Log shippers index the fields,
so an operator can pull every line of one run across all services.

The ids live in a ``ContextVar``: each asyncio task handling a message sees
its own, and a ``with log_context(...)`` around a handler is enough.

Secrets never reach the output: :class:`RedactingFilter` replaces the
values of keys that name secrets (token, password, api_key,
authorization...) in ``extra`` fields, mapping arguments and the context,
and masks ``key=value`` pairs, bearer tokens and URL passwords in the text.
Numbers are left alone, so ``prompt_tokens=812`` stays readable.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import IO, Any

__all__ = [
    "CONTEXT_FIELDS",
    "REDACTED",
    "JsonFormatter",
    "RedactingFilter",
    "configure_logging",
    "current_log_context",
    "log_context",
    "redact_text",
    "redact_value",
]

REDACTED = "[REDACTED]"
CONTEXT_FIELDS = ("correlation_id", "causation_id", "run_id", "session_id", "trace_id")
"""The ids handlers are expected to set; others (agent_id, call_id...) are welcome."""

_RESERVED = frozenset({"ts", "level", "logger", "msg", "service", "exc", "stack"})
_CONTEXT: ContextVar[Mapping[str, str]] = ContextVar(
    "mindstream_log_context", default=MappingProxyType({})
)
_CONTEXT_ATTR = "_mindstream_log_context"
_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}

_SECRET_KEY = re.compile(
    r"pass(word|wd|phrase)?|secret|token|api[_-]?key|authori[sz]ation|cookie|credential"
    r"|private[_-]?key|^auth$",
    re.IGNORECASE,
)
_TEXT_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Authorization: Bearer abc / authorization=Basic abc
    (re.compile(r"(?i)\b(authori[sz]ation[\"']?\s*[:=]\s*[\"']?)(?:(?:bearer|basic)\s+)?[^\s\"',;]+"),
     r"\1" + REDACTED),
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1" + REDACTED),
    # password=..., "api_key": "...", x-auth-token: ... (not plain numbers: max_tokens=100)
    (re.compile(
        r"(?i)\b([\w-]*(?:pass(?:word|wd|phrase)?|secret|token|api[_-]?key|credential)[\w-]*"
        r"[\"']?\s*[:=]\s*[\"']?)(?!\d+\b)[^\s\"',;&]+"),
     r"\1" + REDACTED),
    # scheme://user:password@host
    (re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/?#@\s]*:)[^@/?#\s]+@"), r"\1" + REDACTED + "@"),
)  # fmt: skip


@contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """Add ids to every log line written inside the block (``None`` values are skipped).

    Blocks nest: inner fields add to, and may override, outer ones.
    """
    clash = _RESERVED.intersection(fields)
    if clash:
        raise ValueError(f"log context cannot set reserved fields {sorted(clash)}")
    merged = dict(_CONTEXT.get())
    merged.update({k: str(v) for k, v in fields.items() if v is not None})
    token = _CONTEXT.set(MappingProxyType(merged))
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def current_log_context() -> Mapping[str, str]:
    """The ids :func:`log_context` has set for the running task."""
    return _CONTEXT.get()


def redact_text(text: str) -> str:
    """``text`` with secret-looking ``key=value`` pairs, bearer tokens and URL passwords masked."""
    for pattern, replacement in _TEXT_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_value(key: str, value: object) -> object:
    """``value`` with secrets masked: the whole value if ``key`` names a secret, else
    the secret-named keys found inside mappings and sequences, and the text of strings."""
    if _SECRET_KEY.search(key) and value is not None and not isinstance(value, int | float):
        return REDACTED
    if isinstance(value, Mapping):
        return {str(k): redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value("", v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


class RedactingFilter(logging.Filter):
    """Masks secrets on the record itself, before any formatter or other handler sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, Mapping):
            record.args = {k: redact_value(str(k), v) for k, v in record.args.items()}
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: let the handler report it as usual
            return True
        record.msg = redact_text(message)
        record.args = None
        for key in _extra_keys(record):
            setattr(record, key, redact_value(key, getattr(record, key)))
        context = getattr(record, _CONTEXT_ATTR, None)
        if isinstance(context, Mapping):
            setattr(record, _CONTEXT_ATTR, {k: redact_value(k, v) for k, v in context.items()})
        return True


class _ContextFilter(logging.Filter):
    """Captures the log context when the line is written, not when it is formatted,
    so a queue handler formatting later in another thread still sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, _CONTEXT_ATTR):
            setattr(record, _CONTEXT_ATTR, dict(_CONTEXT.get()))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record; non-JSON values are written with ``str``."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        line: dict[str, Any] = {
            "ts": ts.replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "service": self.service,
        }
        context = getattr(record, _CONTEXT_ATTR, None)
        if context is None:
            context = _CONTEXT.get()
        for key, value in context.items():
            line.setdefault(key, value)
        for key in _extra_keys(record):
            line.setdefault(key, getattr(record, key))
        if record.exc_info:
            line["exc"] = redact_text(self.formatException(record.exc_info))
        elif record.exc_text:
            line["exc"] = redact_text(record.exc_text)
        if record.stack_info:
            line["stack"] = redact_text(self.formatStack(record.stack_info))
        return json.dumps(line, default=str, ensure_ascii=False, separators=(",", ":"))


def _extra_keys(record: logging.LogRecord) -> list[str]:
    return [k for k in vars(record) if k not in _STANDARD_ATTRS and not k.startswith("_")]


_HANDLER_MARK = "_mindstream_json_handler"


def configure_logging(
    service: str, level: str = "INFO", *, stream: IO[str] | None = None
) -> logging.Handler:
    """Send the root logger's records to ``stream`` (stderr) as redacted JSON lines.

    Called once by each entrypoint. Calling it again replaces the handler it
    installed before; handlers installed by others (pytest's capture) stay.
    """
    levels = logging.getLevelNamesMapping()
    if level.upper() not in levels:
        raise ValueError(f"log level {level!r} is not one of {sorted(set(levels) - {'NOTSET'})}")
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, _HANDLER_MARK, False):
            root.removeHandler(old)
            old.close()
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    setattr(handler, _HANDLER_MARK, True)
    handler.addFilter(_ContextFilter())
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter(service))
    root.addHandler(handler)
    root.setLevel(levels[level.upper()])
    logging.captureWarnings(True)
    return handler
