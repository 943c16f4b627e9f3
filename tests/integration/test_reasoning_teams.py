"""Teams: coordinate (delegation as child runs) and route (hand over), through real memory."""

from __future__ import annotations

import uuid

import pytest

from schemas.runs import RunRequested, RunStatus
from schemas.topics import RUNS_REQUESTED
from shared.settings import KafkaSettings, MongoSettings
from tests.integration.reasoning_harness import ReasoningStack, agent, reasoning_stack

pytestmark = pytest.mark.integration

TEAM = [
    agent("""
id: team
instructions: You lead a team of a researcher and a writer.
model: {name: scripted}
team: {mode: coordinate, members: [researcher, writer], max_depth: 1, max_fanout: 2}
"""),
    agent("""
id: researcher
description: finds facts
instructions: You are the researcher agent.
model: {name: scripted}
"""),
    agent("""
id: writer
description: writes prose
instructions: You are the writer agent.
model: {name: scripted}
"""),
    agent("""
id: desk
instructions: You are the front desk and route requests.
model: {name: scripted}
team: {mode: route, members: [researcher, writer], max_depth: 1}
"""),
]

SCRIPT = r"""
rules:
  - name: leader-second
    match: {system: "You lead a team", tool_result: delegate}
    max_uses: 1
    tool_calls:
      - {name: delegate, arguments: {member: writer, task: "write up: {{tool_result:delegate}}"}}
  - name: leader-final
    match: {system: "You lead a team", tool_result: delegate}
    text: "Team answer: {{tool_result:delegate}}"
  - name: leader-first
    match: {system: "You lead a team"}
    tool_calls:
      - {name: delegate, arguments: {member: nobody, task: "this member does not exist"}}
      - {name: delegate, arguments: {member: researcher, task: "facts about {{last_user}}"}}
  - name: desk
    match: {system: "front desk"}
    tool_calls: [{name: route_to, arguments: {member: researcher}}]
  - name: researcher
    match: {system: "You are the researcher agent"}
    text: "Fact: the sky is blue."
  - name: writer
    match: {system: "You are the writer agent"}
    text: "Written: {{last_user}}"
"""


async def _request(rs: ReasoningStack, agent_id: str, text: str) -> str:
    run_id = f"run-{uuid.uuid4().hex[:10]}"
    await rs.publisher.publish(RUNS_REQUESTED, RunRequested(
        run_id=run_id, agent_id=agent_id, session_id=f"s-{uuid.uuid4().hex[:6]}",
        user_id="u-1", input=text))
    return run_id


async def test_coordinate_team_completes_through_child_runs(
    topics: KafkaSettings, mongo_settings: MongoSettings
) -> None:
    async with reasoning_stack(topics, mongo_settings, SCRIPT, TEAM, with_memory=True) as rs:
        run_id = await _request(rs, "team", "the sky")
        done = await rs.finished(run_id, timeout=60)
        assert done.status is RunStatus.COMPLETED, done.error
        assert done.output == "Team answer: Written: write up: Fact: the sky is blue."
        children = rs.requested.messages(lambda r: r.parent_run_id == run_id)
        assert sorted(c.agent_id for c in children) == ["researcher", "writer"]
        assert all(c.depth == 1 and c.session_id != done.session_id for c in children)
        for child in children:
            finished = await rs.finished(child.run_id)
            assert finished.parent_run_id == run_id and finished.status is RunStatus.COMPLETED
        kinds = rs.kinds(run_id)
        assert kinds.count("run.child_started") == 2 and kinds.count("run.child_completed") == 2
        # The unknown member was refused at once, as an error the model could read.
        tool_messages = [m for m in done.messages if m.role.value == "tool"]
        assert any("unknown team member 'nobody'" in (m.content or "") for m in tool_messages)


async def test_route_team_hands_over_and_returns_the_members_answer(
    topics: KafkaSettings, mongo_settings: MongoSettings
) -> None:
    async with reasoning_stack(topics, mongo_settings, SCRIPT, TEAM, with_memory=True) as rs:
        run_id = await _request(rs, "desk", "what colour is the sky?")
        done = await rs.finished(run_id, timeout=60)
        assert done.status is RunStatus.COMPLETED, done.error
        assert done.output == "Fact: the sky is blue."
        assert done.metrics.model_calls == 1  # handed over: the leader did not speak again
        (child,) = rs.requested.messages(lambda r: r.parent_run_id == run_id)
        assert child.agent_id == "researcher" and child.input == "what colour is the sky?"
