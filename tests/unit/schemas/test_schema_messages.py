from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from schemas.agents import AgentDefinition, ModelSettings, TeamMode, TeamSettings, split_agent_ref
from schemas.base import Message
from schemas.common import ChatMessage, ChatRole, Usage
from schemas.runs import RunCommand, RunCompleted, RunEvent, RunReady, RunRequested
from schemas.tools import MAX_INLINE_CONTENT_BYTES, ToolResult
from tests.unit.schemas.samples import T0, sample_messages, sample_request

pytestmark = pytest.mark.unit


def _with(message: Message, **changes: Any) -> dict[str, Any]:
    return message.model_dump() | changes


def test_samples_are_valid_and_frozen() -> None:
    for message in sample_messages():
        assert type(message).model_validate(message.model_dump()) == message
        with pytest.raises(ValidationError):
            message.session_id = "x"  # type: ignore[attr-defined]


def test_every_field_is_documented() -> None:
    def walk(model: type[Any], seen: set[type[Any]]) -> None:
        if model in seen:
            return
        seen.add(model)
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
            for arg in (*getattr(field.annotation, "__args__", ()), field.annotation):
                if isinstance(arg, type) and hasattr(arg, "model_fields"):
                    walk(arg, seen)

    seen: set[type[Any]] = set()
    for message in sample_messages():
        walk(type(message), seen)
    assert len(seen) > 15


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError, match="extra"):
        RunRequested.model_validate(_with(sample_request(), surprise=1))


def test_times_must_be_aware_and_become_utc() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        RunRequested.model_validate(_with(sample_request(), requested_at=datetime(2025, 1, 1)))
    plus_two = T0.astimezone(timezone(timedelta(hours=2)))
    request = RunRequested.model_validate(_with(sample_request(), requested_at=plus_two))
    assert request.requested_at == T0
    assert request.requested_at.utcoffset() == timedelta(0)


def test_bounds_and_patterns() -> None:
    base = sample_request()
    for bad in (
        {"input": "x" * 32_001},
        {"input": ""},
        {"run_id": "has space"},
        {"run_id": "a" * 129},
        {"agent_id": "support@0"},
        {"reply_topic": "bad topic"},
        {"metadata": {f"k{i}": "v" for i in range(33)}},
        {"priority": "urgent"},
    ):
        with pytest.raises(ValidationError):
            RunRequested.model_validate(_with(base, **bad))


def test_child_run_needs_parent_and_depth() -> None:
    base = sample_request()
    with pytest.raises(ValidationError, match="parent_run_id"):
        RunRequested.model_validate(_with(base, depth=1))
    with pytest.raises(ValidationError, match="parent_run_id"):
        RunRequested.model_validate(_with(base, parent_run_id="run-0"))
    with pytest.raises(ValidationError, match="own parent"):
        RunRequested.model_validate(_with(base, parent_run_id="run-1", depth=1))
    child = RunRequested.model_validate(_with(base, parent_run_id="run-0", depth=1))
    assert child.depth == 1


def test_run_ready_ids_match_request() -> None:
    ready = sample_messages()[1]
    with pytest.raises(ValidationError, match="match the request"):
        RunReady.model_validate(_with(ready, session_id="other"))


def test_run_event_kind_requires_its_fields() -> None:
    event = sample_messages()[2]
    with pytest.raises(ValidationError, match=r"tool\.requested needs call_id, tool"):
        RunEvent.model_validate(_with(event, call_id=None, tool=None))
    with pytest.raises(ValidationError, match=r"model\.delta needs text"):
        RunEvent.model_validate(_with(event, kind="model.delta"))
    with pytest.raises(ValidationError, match=r"run\.failed needs reason"):
        RunEvent.model_validate(_with(event, kind="run.failed"))
    with pytest.raises(ValidationError, match="child_run_id"):
        RunEvent.model_validate(_with(event, kind="run.child_started"))
    RunEvent.model_validate(_with(event, kind="run.child_started", child_run_id="run-2"))


def test_run_completed_error_iff_not_completed() -> None:
    done = sample_messages()[3]
    with pytest.raises(ValidationError, match="error is set exactly"):
        RunCompleted.model_validate(_with(done, status="failed"))
    with pytest.raises(ValidationError, match="error is set exactly"):
        RunCompleted.model_validate(_with(done, error="boom"))
    RunCompleted.model_validate(_with(done, status="failed", error="model unavailable"))


def test_cancel_takes_no_call_id() -> None:
    command = sample_messages()[4]
    with pytest.raises(ValidationError, match="call_id is only"):
        RunCommand.model_validate(_with(command, command="cancel"))


def test_chat_message_role_rules() -> None:
    with pytest.raises(ValidationError, match="tool_call_id"):
        ChatMessage(role=ChatRole.TOOL, content="x")
    with pytest.raises(ValidationError, match="only assistant"):
        ChatMessage.model_validate(
            {"role": "user", "content": "x", "tool_calls": [{"id": "c", "name": "t"}]}
        )
    assert (Usage(prompt_tokens=1) + Usage(completion_tokens=2)).total_tokens == 3


def test_tool_result_consistency() -> None:
    result = sample_messages()[7]
    with pytest.raises(ValidationError, match="ok is false"):
        ToolResult.model_validate(_with(result, ok=False))
    with pytest.raises(ValidationError, match="ok is false"):
        ToolResult.model_validate(_with(result, error={"code": "timeout", "message": "slow"}))
    failed = ToolResult.model_validate(
        _with(result, ok=False, content=None, error={"code": "timeout", "message": "slow"})
    )
    assert failed.error is not None
    ref = {"ref_id": "blob-1", "size_bytes": 10, "sha256": "0" * 64}
    with pytest.raises(ValidationError, match="exclusive"):
        ToolResult.model_validate(_with(result, content_ref=ref))
    ToolResult.model_validate(_with(result, content=None, content_ref=ref))
    with pytest.raises(ValidationError, match="content_ref"):
        ToolResult.model_validate(_with(result, content="x" * MAX_INLINE_CONTENT_BYTES))


def _agent(**changes: Any) -> dict[str, Any]:
    base = AgentDefinition(
        id="support", version=1, instructions="Help.", model=ModelSettings(name="m")
    )
    return base.model_dump() | changes


def test_agent_definition_validators() -> None:
    cases: dict[str, dict[str, Any]] = {
        "own agent": {"team": {"members": ["billing", "support@3"]}},
        "duplicate team member": {"team": {"members": ["billing", "billing@2"]}},
        "duplicate tool": {"tools": ["a", "a"]},
        "not allowed": {"tools": ["a"], "require_approval": ["b"]},
        "max_fanout": {"team": {"members": ["a", "b", "c"], "mode": "broadcast", "max_fanout": 2}},
        "type": {"output_schema": {"type": "array"}},
    }
    for message, change in cases.items():
        with pytest.raises(ValidationError, match=message):
            AgentDefinition.model_validate(_agent(**change))
    with pytest.raises(ValidationError):
        AgentDefinition.model_validate(_agent(id="support@2"))
    with pytest.raises(ValidationError):
        AgentDefinition.model_validate(_agent(model={"name": "m", "base_url": "ftp://x"}))
    ok = AgentDefinition.model_validate(
        _agent(team=TeamSettings(members=["a", "b"], mode=TeamMode.BROADCAST).model_dump())
    )
    assert ok.team is not None
    assert split_agent_ref("support@3") == ("support", 3)
    assert split_agent_ref("support") == ("support", None)
