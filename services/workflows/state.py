"""A workflow run as stored: the run's status and one record per step instance.

A step instance is keyed by its *path*: the step id, prefixed inside loops by
``loop.N/`` for each enclosing loop iteration (``refine.2/draft``). Loop
checks and agent conditions ask a small agent; that run is an instance of
its own (``refine#until.2``, ``gate#check``), so every model call of a
workflow has one record and one deterministic run id.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

__all__ = ["StepRun", "StepStatus", "WorkflowState", "WorkflowStatus"]


class WorkflowStatus(enum.StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class StepStatus(enum.StrEnum):
    RUNNING = "running"  # dispatched (agent run, tool call) or evaluating (parallel, loop)
    AWAITING_APPROVAL = "awaiting_approval"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class StepRun(BaseModel):
    path: str
    step_id: str
    type: str  # a StepType value, or "check" for a judge run
    status: StepStatus = StepStatus.RUNNING
    attempt: int = 1
    iteration: int = 1  # loops: the iteration under way
    agent: str | None = None  # agent run or tool call in flight: who, what, where
    request: Any = None  # the agent's input text, or the tool's arguments
    run_id: str | None = None
    session_id: str | None = None
    output: str | None = None
    error: str | None = None
    branch: str | None = None  # condition/router: the step chosen next ("" ends the scope)
    order: int = 0  # completion order, so "the newest output of step X" is well defined
    started_at: datetime
    finished_at: datetime | None = None

    @property
    def open(self) -> bool:
        return self.status in (StepStatus.RUNNING, StepStatus.AWAITING_APPROVAL)


class WorkflowState(BaseModel):
    workflow_run_id: str
    workflow_id: str
    workflow_version: int
    input: str
    user_id: str
    session_id: str
    reply_topic: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    status: WorkflowStatus = WorkflowStatus.RUNNING
    steps: dict[str, StepRun] = Field(default_factory=dict)
    dispatched: list[str] = Field(default_factory=list)  # every run/call id ever sent
    finished: int = 0  # step instances finished so far (gives StepRun.order)
    seq: int = 0  # next WorkflowEvent seq
    step: int = 0  # persisted steps, numbers the outbox ids
    version: int = 0  # optimistic concurrency, mirrored from the document
    output: str | None = None
    failure_reason: str | None = None
    created_at: datetime
    updated_at: datetime
    deadline: datetime

    @property
    def terminal(self) -> bool:
        return self.status is not WorkflowStatus.RUNNING

    @property
    def ref(self) -> str:
        if not self.workflow_version:  # refused at start: no version was ever found
            return self.workflow_id
        return f"{self.workflow_id}@{self.workflow_version}"

    def latest_outputs(self) -> dict[str, str]:
        """The newest output of each step id (the last loop iteration's, say)."""
        done = sorted((s for s in self.steps.values() if s.status is StepStatus.COMPLETED),
                      key=lambda s: s.order)
        return {s.step_id: s.output or "" for s in done if s.type != "check"}

    def run_ids(self) -> list[str]:
        """Every agent run and tool call the workflow dispatched (for matching results)."""
        return list(self.dispatched)
