"""Team mode broadcast (reasoning): one ``broadcast(task)`` becomes a delegation per member."""

from __future__ import annotations

import pytest

from schemas.agents import AgentDefinition
from services.reasoning.model import ModelToolCall
from services.reasoning.state import RunState
from services.reasoning.toolbox import ToolCatalog, plan_calls

pytestmark = pytest.mark.unit

PANEL = AgentDefinition.model_validate({
    "id": "panel", "version": 1, "instructions": "lead", "model": {"name": "m"},
    "team": {"mode": "broadcast", "members": ["a", "b@2", "c"], "max_depth": 1,
             "max_fanout": 3},
})


def _run(depth: int = 0) -> RunState:
    return RunState(run_id="r", session_id="s", agent_id="panel", user_id="u", depth=depth)


def test_broadcast_is_offered_instead_of_delegate() -> None:
    names = [t["function"]["name"] for t in ToolCatalog({}).offered(PANEL, _run())]
    assert names == ["broadcast"]
    assert ToolCatalog({}).offered(PANEL, _run(depth=1)) == []  # at max depth: no team tool


def test_one_broadcast_call_becomes_one_child_run_per_member() -> None:
    calls = [ModelToolCall(id="c0", name="broadcast", arguments={"task": "weigh in"})]
    p = plan_calls(PANEL, _run(), calls, ToolCatalog({}), "input")
    assert p.refused == {}
    assert [(c.tool, c.kind, c.arguments) for c in p.calls] == [
        ("delegate", "delegate", {"member": "a", "task": "weigh in"}),
        ("delegate", "delegate", {"member": "b@2", "task": "weigh in"}),
        ("delegate", "delegate", {"member": "c", "task": "weigh in"}),
    ]
    assert len({c.child_run_id for c in p.calls}) == 3
    assert [c.child_session_id for c in p.calls] == ["s:a", "s:b", "s:c"]
    again = plan_calls(PANEL, _run(), calls, ToolCatalog({}), "input")
    assert [c.call_id for c in again.calls] == [c.call_id for c in p.calls]


def test_broadcast_without_a_task_is_refused_per_member() -> None:
    calls = [ModelToolCall(id="c0", name="broadcast", arguments={})]
    p = plan_calls(PANEL, _run(), calls, ToolCatalog({}), "input")
    assert set(p.refused.values()) == {"invalid_arguments: 'task' must be a non-empty string"}
    assert len(p.refused) == 3 and not any(c.child_run_id for c in p.calls)
