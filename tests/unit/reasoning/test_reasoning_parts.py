"""Small parts of the reasoning service: call planning, delta batching, settings, agents CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mindstream.cli.agents_cmd import load_definitions, plan
from mindstream.cli.errors import CliError
from schemas.agents import AgentDefinition
from services.reasoning.deltas import DeltaBatcher
from services.reasoning.model import ModelToolCall
from services.reasoning.settings import ReasoningSettings
from services.reasoning.state import RunState
from services.reasoning.toolbox import ToolCatalog, child_session, plan_calls

pytestmark = pytest.mark.unit

TEAM = AgentDefinition.model_validate({
    "id": "lead", "version": 1, "instructions": "lead", "model": {"name": "m"},
    "tools": ["calculator"],
    "team": {"mode": "coordinate", "members": ["a", "b@2"], "max_depth": 2, "max_fanout": 2},
})


def _run(depth: int = 0) -> RunState:
    return RunState(run_id="r", session_id="s", agent_id="lead", user_id="u", depth=depth)


def _calls(*specs: tuple[str, dict[str, object]]) -> list[ModelToolCall]:
    return [ModelToolCall(id=f"c{i}", name=n, arguments=a) for i, (n, a) in enumerate(specs)]


def test_delegations_become_child_runs_within_fanout_and_members() -> None:
    calls = _calls(("delegate", {"member": "a", "task": "x"}),
                   ("delegate", {"member": "b", "task": "y"}),
                   ("delegate", {"member": "a", "task": "z"}),
                   ("delegate", {"member": "zed", "task": "w"}),
                   ("calculator", {"expression": "1"}),
                   ("shell", {}))
    p = plan_calls(TEAM, _run(), calls, ToolCatalog({}), "input")
    kids = [c for c in p.calls if c.child_run_id]
    assert [c.arguments["member"] for c in kids] == ["a", "b@2"]
    assert all(c.child_session_id == f"s:{c.arguments['member'].split('@')[0]}" for c in kids)
    refused = list(p.refused.values())
    assert refused == ["not_allowed: at most 2 delegations at once",
                       "invalid_arguments: unknown team member 'zed'",
                       "not_allowed: tool 'shell' is not allowed for agent 'lead'"]
    again = plan_calls(TEAM, _run(), calls, ToolCatalog({}), "input")
    assert [c.call_id for c in again.calls] == [c.call_id for c in p.calls]  # deterministic


def test_depth_limit_refuses_delegation_and_hides_the_tool() -> None:
    p = plan_calls(TEAM, _run(depth=2), _calls(("delegate", {"member": "a", "task": "x"})),
                   ToolCatalog({}), "input")
    assert list(p.refused.values()) == ["not_allowed: delegation depth limit 2 reached"]
    names = [t["function"]["name"] for t in ToolCatalog({}).offered(TEAM, _run(depth=2))]
    assert names == ["calculator"]
    names = [t["function"]["name"] for t in ToolCatalog({}).offered(TEAM, _run())]
    assert names == ["calculator", "delegate"]


def test_catalog_carries_real_tool_schemas() -> None:
    catalog = ToolCatalog.discover(["services.tools.builtins.calculator", "no.such.module"])
    schema = catalog.schema("calculator")["function"]["parameters"]
    assert schema["required"] == ["expression"]
    assert catalog.schema("mystery")["function"]["parameters"]["type"] == "object"


def test_child_sessions_stay_within_the_id_limit() -> None:
    assert child_session("s", "a") == "s:a"
    assert len(child_session("s" * 120, "member")) <= 128


class Ticks:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


async def test_deltas_flush_by_size_by_time_and_at_the_end() -> None:
    sent: list[tuple[int, str]] = []

    async def emit(seq: int, text: str) -> None:
        sent.append((seq, text))

    clock = Ticks()
    batcher = DeltaBatcher(emit, start_seq=5, max_ms=50, max_chars=10, clock=clock)
    for piece in ["ab", "cd", "efghijk"]:  # 11 chars: one flush by size
        await batcher.add(piece)
    await batcher.add("x")
    clock.t = 0.06  # 60 ms later the next piece flushes by time
    await batcher.add("y")
    await batcher.add("z")
    await batcher.flush()
    await batcher.flush()  # nothing left: no empty event
    assert sent == [(5, "abcdefghijk"), (6, "xy"), (7, "z")]
    assert batcher.next_seq == 8


def test_settings_use_the_service_prefix_and_the_global_model_endpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MINDSTREAM_MODEL_BASE_URL", "http://global:1/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-global")
    monkeypatch.setenv("MINDSTREAM_REASONING_CONSUMER_CONCURRENCY", "7")
    monkeypatch.setenv("REASONING_CONSUMER_CONCURRENCY", "99")  # the old prefix: ignored
    s = ReasoningSettings()
    assert s.model_base_url == "http://global:1/v1" and s.consumer_concurrency == 7
    assert s.model_api_key.get_secret_value() == "sk-global"
    monkeypatch.setenv("MINDSTREAM_REASONING_MODEL_BASE_URL", "http://mine:2/v1")
    assert ReasoningSettings().model_base_url == "http://mine:2/v1"


def _write(tmp: Path, name: str, doc: dict[str, object]) -> Path:
    path = tmp / name
    path.write_text(yaml.safe_dump(doc))
    return path


def test_agents_apply_names_the_file_and_the_field(tmp_path: Path) -> None:
    _write(tmp_path, "ok.yaml", {"id": "ok", "instructions": "x", "model": {"name": "m"}})
    _write(tmp_path, "bad.yaml", {"id": "bad", "instructions": "x",
                                  "model": {"name": "m", "temperature": 9}})
    with pytest.raises(CliError) as err:
        load_definitions([str(tmp_path)])
    assert str(err.value).startswith(f"{tmp_path / 'bad.yaml'}: field 'model.temperature':")
    assert err.value.exit_code == 2


def test_the_example_agents_are_valid() -> None:
    loaded = load_definitions([str(Path(__file__).resolve().parents[3] / "agents")])
    ids = {d.id for _p, _raw, d in loaded}
    assert {"assistant", "researcher", "writer", "team", "helpdesk", "fetcher"} <= ids


def test_versions_are_assigned_from_the_topic_state() -> None:
    raw = {"id": "a", "instructions": "x", "model": {"name": "m"}}
    v1 = AgentDefinition.model_validate({**raw, "version": 1})
    assert plan(None, raw, v1) == ("created", 1)
    assert plan(v1, raw, v1) == ("unchanged", 1)
    changed = AgentDefinition.model_validate({**raw, "instructions": "y", "version": 1})
    assert plan(v1, {**raw, "instructions": "y"}, changed) == ("updated", 2)
    with pytest.raises(CliError, match="not newer"):
        plan(v1, {**raw, "instructions": "y", "version": 1}, changed)
