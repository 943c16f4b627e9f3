from __future__ import annotations

from pathlib import Path

import pytest

from mindstream.cli.errors import CliError
from mindstream.cli.main import main
from mindstream.cli.workflows_cmd import check_agents, load_workflows, plan, render_event
from schemas.agents import AgentDefinition
from schemas.workflows import WorkflowEvent
from shared.agent_registry import AgentRegistry
from tests.unit.workflows.helpers import T0, definition

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]


def _write(tmp_path: Path, text: str, name: str = "w.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_example_workflows_are_valid() -> None:
    loaded = load_workflows([str(ROOT / "workflows")])
    assert [d.id for _, _, d in loaded] == ["research-write-review"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("id: x\nsteps: [ {id: a\n", "not readable YAML"),
        ("- just a list\n", "expected a mapping of workflow fields"),
        ("id: x\nsteps:\n  - {id: a, type: agent, agent: r, next: a}\n",
         "cycle outside a loop: a -> a"),
        ("id: x\nsteps:\n  - {id: a, type: agent}\n", "step 'a' (agent) needs agent"),
    ],
)
def test_invalid_files_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            text: str, expected: str) -> None:
    path = _write(tmp_path, text)
    assert main(["workflows", "apply", "-f", str(path)]) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1 and str(path) in err


def test_unknown_agents_are_refused_when_the_registry_knows_agents(tmp_path: Path) -> None:
    path = _write(tmp_path, "id: x\nsteps: [{id: a, type: agent, agent: ghost}]\n")
    loaded = load_workflows([str(path)])
    registry = AgentRegistry()
    check_agents(loaded, registry)  # an empty registry knows nothing: no check
    registry.apply(AgentDefinition(id="real", version=1, instructions="i",
                                   model={"name": "m"}))  # type: ignore[arg-type]
    with pytest.raises(CliError, match="step 'a' names unknown agent 'ghost'"):
        check_agents(loaded, registry)


def test_versions_are_planned_like_agents() -> None:
    d = definition("id: x\nsteps: [{id: a, type: approval}]\n")
    assert plan(None, {}, d) == ("created", 1)
    assert plan(d, {}, d) == ("unchanged", 1)
    changed = definition("id: x\ndescription: new\nsteps: [{id: a, type: approval}]\n")
    assert plan(d, {}, changed) == ("updated", 2)
    with pytest.raises(CliError, match="version 1 is not newer"):
        plan(d, {"version": 1}, changed)


def test_render_event() -> None:
    event = WorkflowEvent(workflow_run_id="r", workflow_id="w@1", seq=3, kind="step.completed",  # type: ignore[arg-type]
                          at=T0, step="draft", output="a  long\nanswer")
    assert render_event(event) == "#3   step.completed             draft -> a long answer"
