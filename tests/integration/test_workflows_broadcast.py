"""Team mode broadcast through the real pipeline: every member answers, the leader composes."""

from __future__ import annotations

import uuid

import pytest

from schemas.runs import RunRequested, RunStatus
from schemas.topics import RUNS_REQUESTED
from shared.settings import KafkaSettings, MongoSettings
from tests.integration.reasoning_harness import agent, reasoning_stack

pytestmark = pytest.mark.integration

TEAM = [
    agent("""
id: panel
instructions: You chair a panel.
model: {name: scripted}
team: {mode: broadcast, members: [optimist, pessimist, realist], max_depth: 1, max_fanout: 3}
"""),
    *[agent(f"id: {m}\ninstructions: You are the {m}.\nmodel: {{name: scripted}}")
      for m in ("optimist", "pessimist", "realist")],
]

SCRIPT = r"""
rules:
  - match: {system: "chair a panel", tool_result: delegate}
    text: "Panel composed"
  - match: {system: "chair a panel"}
    tool_calls: [{name: broadcast, arguments: {task: "opinion on {{last_user}}"}}]
  - match: {system: "You are the (\\w+)"}
    text: "view: {{last_user}}"
"""


async def test_broadcast_asks_every_member_in_parallel_then_composes(
    topics: KafkaSettings, mongo_settings: MongoSettings
) -> None:
    async with reasoning_stack(topics, mongo_settings, SCRIPT, TEAM, with_memory=True) as rs:
        run_id = f"run-{uuid.uuid4().hex[:10]}"
        await rs.publisher.publish(RUNS_REQUESTED, RunRequested(
            run_id=run_id, agent_id="panel", session_id=f"s-{uuid.uuid4().hex[:6]}",
            user_id="u-1", input="rain"))
        done = await rs.finished(run_id, timeout=90)
        assert done.status is RunStatus.COMPLETED, done.error
        assert done.output == "Panel composed"
        children = rs.requested.messages(lambda r: r.parent_run_id == run_id)
        assert sorted(c.agent_id for c in children) == ["optimist", "pessimist", "realist"]
        assert {c.input for c in children} == {"opinion on rain"}
        kinds = rs.kinds(run_id)
        # All three children started in one step, before any of them completed.
        assert kinds.count("run.child_started") == 3
        assert kinds.index("run.child_completed") > max(
            i for i, k in enumerate(kinds) if k == "run.child_started")
        tool_turns = [m.content for m in done.messages if m.role.value == "tool"]
        assert sorted(tool_turns) == ["view: opinion on rain"] * 3
        assert done.metrics.model_calls == 2
