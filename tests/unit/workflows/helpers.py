"""Drive the pure workflow engine by hand: no Kafka, no MongoDB."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml

from schemas.runs import RunRequested
from schemas.tools import ToolCall
from schemas.workflows import WorkflowDefinition, WorkflowEvent
from services.workflows.engine import Engine, Outgoing
from services.workflows.state import WorkflowState

T0 = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def definition(doc: str) -> WorkflowDefinition:
    raw: dict[str, Any] = yaml.safe_load(doc)
    raw.setdefault("version", 1)
    return WorkflowDefinition.model_validate(raw)


class Driver:
    """Holds one run's state and everything it sent, step after step."""

    def __init__(self, d: WorkflowDefinition, text: str = "the topic",
                 reply_topic: str | None = None) -> None:
        self.d = d
        self.state = WorkflowState(
            workflow_run_id="wr-1", workflow_id=d.id, workflow_version=d.version, input=text,
            user_id="u-1", session_id="wf-wr-1", reply_topic=reply_topic, created_at=T0,
            updated_at=T0, deadline=T0 + timedelta(seconds=d.deadline_seconds))
        self.sent: list[Outgoing] = []
        self.now = T0

    def step(self, apply: Callable[[Engine], WorkflowState]) -> list[Outgoing]:
        self.now += timedelta(seconds=1)
        engine = Engine(self.d, self.state, self.now)
        new = apply(engine)
        if engine.changed:
            new.step = engine.number
            self.state = new
        self.sent += engine.out
        return engine.out

    def begin(self) -> list[Outgoing]:
        return self.step(lambda e: e.begin())

    def requests(self, out: list[Outgoing] | None = None) -> list[RunRequested]:
        return [o.message for o in (out if out is not None else self.sent)
                if isinstance(o.message, RunRequested)]

    def calls(self, out: list[Outgoing] | None = None) -> list[ToolCall]:
        return [o.message for o in (out if out is not None else self.sent)
                if isinstance(o.message, ToolCall)]

    def events(self) -> list[WorkflowEvent]:
        return [o.message for o in self.sent
                if isinstance(o.message, WorkflowEvent) and o.physical_topic is None]

    def kinds(self) -> list[str]:
        return [f"{e.kind.value}:{e.step}" if e.step else e.kind.value for e in self.events()]

    def finish(self, run_id: str, output: str | None = "ok", *, ok: bool = True,
               error: str | None = None) -> list[Outgoing]:
        return self.step(lambda e: e.run_finished(run_id, ok=ok, output=output, error=error))

    def answer(self, step: str, output: str, *, ok: bool = True) -> list[Outgoing]:
        """Finish the open run of ``step`` (a path)."""
        inst = self.state.steps[step]
        assert inst.run_id is not None, f"{step} has no run in flight"
        return self.finish(inst.run_id, output, ok=ok, error=None if ok else output)

    def pending(self) -> list[str]:
        return sorted(p for p, s in self.state.steps.items()
                      if s.status.value == "running" and s.run_id)
