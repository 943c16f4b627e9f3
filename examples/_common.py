"""What the examples share and none of them is about: printing events, failing readably.

Each example is ``python examples/<name>.py``; this module sits next to them,
so it is importable without installing anything extra.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Coroutine
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaConnectionError, KafkaError

from mindstream.client import RunFailedError, RunTimeoutError
from schemas.runs import RunCompleted, RunEvent, RunEventKind
from schemas.topics import RUNS_COMMANDS, RUNS_EVENTS, RUNS_REQUESTED
from shared.settings import KafkaSettings

HINT = ("is mindstream running? Start it with `make demo` or `mindstream demo --keep`, or point "
        "KAFKA_BOOTSTRAP_SERVERS (and MINDSTREAM_TOPIC_PREFIX) at your deployment")


class ExampleFailed(Exception):
    """The run happened but did not show what the example is about."""


class EventLine:
    """One line per event; the model's streamed text deltas run on as prose."""

    def __init__(self, indent: str = "") -> None:
        self.indent = indent
        self._in_text = False

    def _line(self, text: str) -> None:
        if self._in_text:
            print()
            self._in_text = False
        print(f"{self.indent}{text}", flush=True)

    def event(self, event: RunEvent, who: str | None = None) -> None:
        who = f"[{who}] " if who else ""
        if event.kind is RunEventKind.MODEL_DELTA:
            if not self._in_text:
                print(f"{self.indent}{who}model: ", end="")
                self._in_text = True
            print(event.text or "", end="", flush=True)
        elif event.kind is RunEventKind.TOOL_REQUESTED:
            names = event.data.get("arguments") or []  # events carry argument names, not values
            shown = ", ".join(f"{n}=…" for n in names) if isinstance(names, list) else ""
            self._line(f"{who}tool call  {event.tool}({shown})")
        elif event.kind is RunEventKind.TOOL_COMPLETED:
            ok = "ok" if event.data.get("ok", True) else "error"
            self._line(f"{who}tool done  {event.tool} -> {ok}")
        elif event.kind is RunEventKind.RUN_CHILD_STARTED:
            self._line(f"{who}delegated  to {event.data.get('member')} (run {event.child_run_id})")
        elif event.kind is RunEventKind.RUN_AWAITING_APPROVAL:
            self._line(f"{who}waiting    for approval of {event.tool} (call {event.call_id})")
        elif event.kind not in (RunEventKind.MODEL_COMPLETED, RunEventKind.RUN_COMPLETED):
            self._line(f"{who}{event.kind.value}" + (f": {event.reason}" if event.reason else ""))

    def final(self, result: RunCompleted) -> None:
        m = result.metrics
        self._line(f"run {result.status.value} in {m.duration_ms} ms: {m.model_calls} model call(s), "
                   f"{m.tool_calls} tool call(s)" + (f"; {result.error}" if result.error else ""))


async def preflight() -> None:
    """Fail fast when the run topics are missing (wrong prefix, system not set up).

    Publishing to a topic that does not exist would otherwise wait for its
    metadata until a timeout, saying nothing useful.
    """
    settings = KafkaSettings()
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers)
    try:
        await consumer.start()
        existing = await consumer.topics()
    finally:
        await consumer.stop()
    wanted = [spec.physical(settings.topic_prefix) for spec in (RUNS_REQUESTED, RUNS_EVENTS, RUNS_COMMANDS)]
    missing = [name for name in wanted if name not in existing]
    if missing:
        raise ExampleFailed(f"no topic {missing[0]} at {settings.bootstrap_servers}; {HINT}")


async def _checked(main: Coroutine[Any, Any, None]) -> None:
    try:
        await preflight()
    except BaseException:
        main.close()  # never started; close it so Python does not warn about it
        raise
    await main


def run_example(name: str, main: Coroutine[Any, Any, None]) -> int:
    """Run ``main``; 0 when it returns, 1 with one readable line on stderr when it fails."""
    try:
        asyncio.run(_checked(main))
    except ExampleFailed as exc:
        print(f"{name}: FAILED: {exc}", file=sys.stderr)
        return 1
    except (RunTimeoutError, KafkaConnectionError, KafkaError) as exc:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
        print(f"{name}: FAILED: {type(exc).__name__}: {exc} (Kafka at {bootstrap}); {HINT}",
              file=sys.stderr)
        return 1
    except RunFailedError as exc:
        print(f"{name}: FAILED: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
