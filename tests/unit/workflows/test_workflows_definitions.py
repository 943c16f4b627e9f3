from __future__ import annotations

import pytest
from pydantic import ValidationError

from schemas.workflows import WorkflowCommand, WorkflowEvent, agent_refs, step_refs
from tests.unit.workflows.helpers import T0, definition

pytestmark = pytest.mark.unit


def _refused(doc: str) -> str:
    with pytest.raises(ValidationError) as info:
        definition(doc)
    return str(info.value)


def test_cycles_outside_loops_are_refused_with_the_path() -> None:
    msg = _refused("""
id: w
steps:
  - {id: a, type: agent, agent: x, next: b}
  - {id: b, type: condition, check: {value: "{{steps.a.output}}", equals: "y"}, then: c, otherwise: a}
  - {id: c, type: agent, agent: x}
""")
    assert "cycle outside a loop: a -> b -> a" in msg


def test_a_loop_body_returning_to_its_loop_is_refused() -> None:
    msg = _refused("""
id: w
steps:
  - {id: l, type: loop, body: a}
  - {id: a, type: agent, agent: x, next: l}
""")
    assert "step 'l' is reachable from the workflow and from the body of loop 'l'" in msg


def test_unreachable_and_unknown_steps_are_named() -> None:
    assert "unreachable step(s): orphan" in _refused("""
id: w
steps:
  - {id: a, type: agent, agent: x}
  - {id: orphan, type: agent, agent: x}
""")
    assert "step 'a' refers to unknown step 'nope'" in _refused("""
id: w
steps: [{id: a, type: agent, agent: x, next: nope}]
""")
    assert "step 'a' uses the output of unknown step 'ghost'" in _refused("""
id: w
steps: [{id: a, type: agent, agent: x, input: "{{steps.ghost.output}}"}]
""")


def test_fields_must_fit_the_step_type() -> None:
    assert "step 'a' (agent) does not take branches" in _refused("""
id: w
steps: [{id: a, type: agent, agent: x, branches: [a]}]
""")
    assert "step 'r' (router) needs routes" in _refused("""
id: w
steps: [{id: r, type: router, agent: x}]
""")
    assert "tool step 't' needs run_as" in _refused("""
id: w
steps: [{id: t, type: tool, tool: calculator}]
""")
    assert "duplicate step id 'a'" in _refused("""
id: w
steps: [{id: a, type: approval}, {id: a, type: approval}]
""")


def test_a_step_shared_by_two_parallel_branches_is_refused() -> None:
    assert "reachable from branch 'a' of 'p' and from branch 'b' of 'p'" in _refused("""
id: w
steps:
  - {id: p, type: parallel, branches: [a, b]}
  - {id: a, type: agent, agent: x, next: c}
  - {id: b, type: agent, agent: x, next: c}
  - {id: c, type: agent, agent: x}
""").replace("branch 'b' of 'p' and from branch 'a' of 'p'",
             "branch 'a' of 'p' and from branch 'b' of 'p'")


def test_branches_may_join_inside_one_scope() -> None:
    d = definition("""
id: w
steps:
  - {id: g, type: condition, check: {value: "{{input}}", regex: "x"}, then: a, otherwise: b}
  - {id: a, type: agent, agent: x, next: c}
  - {id: b, type: agent, agent: y, next: c}
  - {id: c, type: agent, agent: z}
""")
    assert d.first == "g"


def test_checks_are_validated() -> None:
    assert "one of equals, regex or agent" in _refused("""
id: w
steps:
  - {id: g, type: condition, check: {value: "x", equals: "a", regex: "b"}, then: a}
  - {id: a, type: approval}
""")
    assert "invalid regex" in _refused("""
id: w
steps:
  - {id: g, type: condition, check: {value: "x", regex: "("}, then: a}
  - {id: a, type: approval}
""")


def test_agent_refs_and_step_refs() -> None:
    d = definition("""
id: w
run_as: helper
steps:
  - {id: t, type: tool, tool: calculator, next: l}
  - {id: l, type: loop, body: a, until: {agent: judge, question: "ok?"}}
  - {id: a, type: agent, agent: writer@2}
""")
    assert sorted(agent_refs(d)) == [("a", "writer@2"), ("l", "judge"), ("t", "helper")]
    assert step_refs("{{steps.a.output}} and {{ steps.b-2.output }}") == ["a", "b-2"]


def test_event_and_command_rules() -> None:
    with pytest.raises(ValidationError, match=r"step\.started needs step"):
        WorkflowEvent(workflow_run_id="r", workflow_id="w@1", seq=0, kind="step.started", at=T0)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match=r"workflow\.failed needs reason"):
        WorkflowEvent(workflow_run_id="r", workflow_id="w@1", seq=0, kind="workflow.failed", at=T0)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="step is only for approve and reject"):
        WorkflowCommand(command_id="c", workflow_run_id="r", command="cancel", step="s",  # type: ignore[arg-type]
                        actor={"kind": "user", "id": "u"})  # type: ignore[arg-type]


def test_a_definition_survives_its_own_json() -> None:
    d = definition("""
id: w
run_as: calc
steps:
  - {id: t, type: tool, tool: calculator, arguments: {expression: "1+1"}, next: l}
  - {id: l, type: loop, body: a, until: {value: "{{steps.a.output}}", regex: "ok"}}
  - {id: a, type: agent, agent: writer}
""")
    assert type(d).model_validate_json(d.model_dump_json()) == d
