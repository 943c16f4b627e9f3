"""Workflows on the real pipeline: memory, reasoning, tools (and workflows) on Kafka and FerretDB.

``workflows_stack`` builds on the reasoning harness (scripted model, agent
definitions, followers of the run topics) and adds the workflow topics'
followers, a way to publish definitions, requests and commands, and -- unless
a test runs it as its own process -- the workflows service in process.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import yaml

from schemas.agents import AgentDefinition
from schemas.common import Actor, ActorKind
from schemas.topics import WORKFLOWS, WORKFLOWS_COMMANDS, WORKFLOWS_EVENTS, WORKFLOWS_REQUESTED
from schemas.workflows import (
    WorkflowCommand,
    WorkflowCommandKind,
    WorkflowDefinition,
    WorkflowEvent,
    WorkflowRequested,
)
from services.workflows.app import WorkflowsApp, assemble
from services.workflows.settings import WorkflowsSettings
from shared.settings import KafkaSettings, MongoSettings
from tests.integration.reasoning_harness import Follower, ReasoningStack, reasoning_stack
from tests.support.waiting import eventually


def workflow(doc: str, version: int = 1) -> WorkflowDefinition:
    raw: dict[str, Any] = yaml.safe_load(doc)
    raw.setdefault("version", version)
    return WorkflowDefinition.model_validate(raw)


@dataclass
class WorkflowsStack:
    rs: ReasoningStack
    events: Follower[WorkflowEvent]
    app: WorkflowsApp | None = None

    async def publish(self, *defs: WorkflowDefinition) -> None:
        for d in defs:
            await self.rs.publisher.publish(WORKFLOWS, d, message_id=f"wf-{d.id}@{d.version}")

    async def start(self, workflow_id: str, text: str, *, run_id: str | None = None) -> str:
        run_id = run_id or f"wr-{uuid.uuid4().hex[:10]}"
        await self.rs.publisher.publish(WORKFLOWS_REQUESTED, WorkflowRequested(
            workflow_run_id=run_id, workflow_id=workflow_id, input=text, user_id="u-1"))
        return run_id

    async def command(self, run_id: str, kind: WorkflowCommandKind, step: str | None = None,
                      reason: str | None = None) -> None:
        await self.rs.publisher.publish(WORKFLOWS_COMMANDS, WorkflowCommand(
            command_id=uuid.uuid4().hex, workflow_run_id=run_id, command=kind, step=step,
            actor=Actor(kind=ActorKind.USER, id="op-1"), reason=reason))

    async def wait(self, run_id: str, kind: str, step: str | None = None,
                   timeout: float = 60.0) -> WorkflowEvent:
        def match(e: WorkflowEvent) -> bool:
            return e.workflow_run_id == run_id and e.kind.value == kind and (
                step is None or e.step == step)
        return (await self.events.wait(match, timeout=timeout))[0]

    async def finished(self, run_id: str, timeout: float = 90.0) -> WorkflowEvent:
        try:
            found = await self.events.wait(
                lambda e: e.workflow_run_id == run_id and e.terminal, timeout=timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.diagnose(run_id)}") from None
        return found[0]

    def diagnose(self, run_id: str) -> str:
        """What the workflow did and what became of each run it asked for."""
        lines = [f"events: {self.kinds(run_id)}"]
        for step, step_run in sorted(self.step_runs(run_id).items()):
            done = self.rs.completed.messages(lambda m, r=step_run: m.run_id == r)
            state = done[0].status.value if done else "no RunCompleted"
            lines.append(f"  {step}: {step_run} -> {state} {self.rs.kinds(step_run)}")
        return "\n".join(lines)

    async def settled(self, mongo_db: Any, run_id: str, timeout: float = 10.0) -> dict[str, Any]:
        """The run's document once its last outbox is cleared (cleared just after publishing)."""
        async def cleared() -> dict[str, Any] | None:
            doc: dict[str, Any] | None = await mongo_db.workflow_runs.find_one({"_id": run_id})
            return doc if doc is not None and not doc["outbox_pending"] else None

        return await eventually(cleared, what=f"workflow run {run_id} settled", timeout_s=timeout)

    def kinds(self, run_id: str) -> list[str]:
        seen: dict[int, WorkflowEvent] = {}
        for e in self.events.messages(lambda e: e.workflow_run_id == run_id):
            seen.setdefault(e.seq, e)
        return [f"{e.kind.value}:{e.step}" if e.step else e.kind.value
                for _, e in sorted(seen.items())]

    def step_runs(self, run_id: str) -> dict[str, str]:
        """step path -> agent run id, from the run requests the workflow sent."""
        requests = self.rs.requested.messages(
            lambda r: r.metadata.get("workflow_run_id") == run_id)
        return {r.metadata["workflow_step"]: r.run_id for r in requests}


@contextlib.asynccontextmanager
async def workflows_stack(
    kafka: KafkaSettings,
    mongo: MongoSettings,
    script: Any,
    agents: list[AgentDefinition],
    workflows: list[WorkflowDefinition],
    *,
    in_process: bool = True,
    with_tools: bool = False,
) -> AsyncIterator[WorkflowsStack]:
    async with contextlib.AsyncExitStack() as stack:
        rs = await stack.enter_async_context(reasoning_stack(
            kafka, mongo, script, agents, with_memory=True, with_tools=with_tools))
        events: Follower[WorkflowEvent] = Follower(kafka.bootstrap_servers, WORKFLOWS_EVENTS,
                                                   kafka.topic_prefix)
        await events.start()
        stack.push_async_callback(events.stop)
        ws = WorkflowsStack(rs, events)
        await ws.publish(*workflows)
        if in_process:
            ws.app = assemble(WorkflowsSettings(consumer_concurrency=2, sweep_interval_s=0.2,
                                                outbox_redrive_after_s=1.0),
                              kafka, mongo, http_port=0)
            await stack.enter_async_context(ws.app.runtime)
        yield ws
