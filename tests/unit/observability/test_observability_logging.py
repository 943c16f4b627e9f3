from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from shared.observability.logging import (
    REDACTED,
    configure_logging,
    current_log_context,
    log_context,
    redact_text,
)

pytestmark = pytest.mark.unit

log = logging.getLogger("mindstream.test.logging")


class Lines:
    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    def all(self) -> list[dict[str, Any]]:
        """This module's lines (asyncio and others may log at DEBUG too)."""
        parsed = [json.loads(line) for line in self.stream.getvalue().splitlines()]
        return [line for line in parsed if line["logger"] == log.name]

    def last(self) -> dict[str, Any]:
        return self.all()[-1]


@pytest.fixture
def lines() -> Iterator[Lines]:
    root = logging.getLogger()
    level = root.level
    stream = io.StringIO()
    handler = configure_logging("reasoning", "DEBUG", stream=stream)
    try:
        yield Lines(stream)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        logging.captureWarnings(False)


def test_each_line_is_one_json_object_with_the_core_fields(lines: Lines) -> None:
    log.info("run %s started", "r1")
    log.debug("second\nline")
    first, second = lines.all()
    assert first["level"] == "INFO"
    assert first["logger"] == "mindstream.test.logging"
    assert first["msg"] == "run r1 started"
    assert first["service"] == "reasoning"
    assert first["ts"].endswith("Z")
    assert "T" in first["ts"]
    assert second["msg"] == "second\nline"


def test_context_fields_are_carried_inside_the_block_only(lines: Lines) -> None:
    with log_context(correlation_id="run-1", causation_id="msg-9", session_id="s-1", run_id=None):
        with log_context(trace_id="4bf92f3577b34da6a3ce929d0e0e4736", run_id="run-1"):
            log.info("inner")
        log.info("outer")
    log.info("after")
    inner, outer, after = lines.all()
    assert inner["correlation_id"] == "run-1"
    assert inner["causation_id"] == "msg-9"
    assert inner["session_id"] == "s-1"
    assert inner["run_id"] == "run-1"
    assert inner["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert "trace_id" not in outer
    assert "run_id" not in outer
    assert outer["correlation_id"] == "run-1"
    assert "correlation_id" not in after
    assert current_log_context() == {}


async def test_each_task_sees_its_own_context(lines: Lines) -> None:
    both_inside = asyncio.Barrier(2)

    async def handle(run_id: str) -> None:
        with log_context(run_id=run_id):
            await both_inside.wait()
            log.info("handling")

    await asyncio.gather(handle("a"), handle("b"))
    assert sorted(line["run_id"] for line in lines.all()) == ["a", "b"]


def test_extra_fields_are_included_and_cannot_hide_core_fields(lines: Lines) -> None:
    log.info("x", extra={"topic": "mindstream.runs.ready.v1", "attempt": 2, "obj": object()})
    line = lines.last()
    assert line["topic"] == "mindstream.runs.ready.v1"
    assert line["attempt"] == 2
    assert line["obj"].startswith("<object object")
    with log_context(agent_id="a1"):
        log.info("y", extra={"agent_id": "spoofed"})
    assert lines.last()["agent_id"] == "a1"


def test_exceptions_are_logged_as_text(lines: Lines) -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("handler failed")
    line = lines.last()
    assert line["level"] == "ERROR"
    assert "Traceback" in line["exc"]
    assert "ValueError: boom" in line["exc"]


def test_secrets_in_extra_fields_are_redacted(lines: Lines) -> None:
    log.info(
        "calling model",
        extra={
            "api_key": "sk-live-123",
            "password": "hunter2",
            "headers": {"Authorization": "Bearer abc.def", "Accept": "json"},
            "items": [{"token": "t0p"}],
            "prompt_tokens": 812,
            "model": "gpt",
        },
    )
    line = lines.last()
    assert line["api_key"] == REDACTED
    assert line["password"] == REDACTED
    assert line["headers"] == {"Authorization": REDACTED, "Accept": "json"}
    assert line["items"] == [{"token": REDACTED}]
    assert line["prompt_tokens"] == 812
    assert line["model"] == "gpt"
    for secret in ("sk-live-123", "hunter2", "abc.def", "t0p"):
        assert secret not in lines.stream.getvalue()


def test_secrets_in_messages_arguments_and_exceptions_are_redacted(lines: Lines) -> None:
    log.info("connect to %s", "mongodb://app:s3cr3t@db:27017/mindstream")
    log.info("sending Authorization: Bearer eyJhbGci.payload.sig now")
    log.info("settings password=hunter2 api_key='sk-1' max_tokens=100")
    log.info("token is %(token)s", {"token": "mapping-secret"})
    with log_context(session_id="s1", api_token="ctx-secret"):  # noqa: S106 - fake secret
        log.info("with context")
    try:
        raise RuntimeError("auth failed for token=exc-secret")
    except RuntimeError:
        log.exception("failed")
    output = lines.stream.getvalue()
    for secret in ("s3cr3t", "eyJhbGci", "hunter2", "sk-1", "mapping-secret", "ctx-secret",
                   "exc-secret"):  # fmt: skip
        assert secret not in output
    first = lines.all()[0]
    assert first["msg"] == f"connect to mongodb://app:{REDACTED}@db:27017/mindstream"
    assert "max_tokens=100" in output


def test_redact_text_leaves_ordinary_text_alone() -> None:
    text = "run r1 completed in 2.5s with 3 tool calls; tokens used: 120"
    assert redact_text(text) == text


def test_reserved_fields_cannot_be_set_by_context() -> None:
    with pytest.raises(ValueError, match="reserved"), log_context(msg="x"):
        pass


def test_configure_logging_validates_level_and_replaces_its_own_handler(lines: Lines) -> None:
    with pytest.raises(ValueError, match="log level 'LOUD'"):
        configure_logging("reasoning", "LOUD")
    root = logging.getLogger()
    before = len(root.handlers)
    stream = io.StringIO()
    handler = configure_logging("reasoning", "warning", stream=stream)
    try:
        assert len(root.handlers) == before
        assert root.level == logging.WARNING
        log.info("dropped")
        log.warning("kept")
        assert [json.loads(line)["msg"] for line in stream.getvalue().splitlines()] == ["kept"]
        assert lines.all() == []
    finally:
        root.removeHandler(handler)
