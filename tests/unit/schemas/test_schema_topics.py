from __future__ import annotations

import pytest

from schemas.runs import RunRequested
from schemas.topics import (
    AGENTS,
    AUDIT,
    CONTROL,
    RUNS_REQUESTED,
    TOPICS,
    WORKFLOWS,
    TopicSpec,
    spec_for_message,
    topic,
)
from tests.unit.schemas.samples import sample_messages, sample_request

pytestmark = pytest.mark.unit

ARCHITECTURE = {
    "mindstream.runs.requested.v1": ("session_id", "RunRequested"),
    "mindstream.runs.ready.v1": ("session_id", "RunReady"),
    "mindstream.runs.events.v1": ("session_id", "RunEvent"),
    "mindstream.runs.completed.v1": ("session_id", "RunCompleted"),
    "mindstream.runs.commands.v1": ("session_id", "RunCommand"),
    "mindstream.tools.calls.v1": ("session_id", "ToolCall"),
    "mindstream.knowledge.queries.v1": ("session_id", "KnowledgeQuery"),
    "mindstream.tools.results.v1": ("session_id", "ToolResult"),
    "mindstream.agents.v1": ("id", "AgentDefinition"),
    "mindstream.audit.v1": ("target.id", "AuditEvent"),
    "mindstream.knowledge.documents.v1": ("document_id", "KnowledgeDocument"),
    "mindstream.control.v1": ("id", "ControlState"),
    "mindstream.workflows.v1": ("id", "WorkflowDefinition"),
    "mindstream.workflows.requested.v1": ("workflow_run_id", "WorkflowRequested"),
    "mindstream.workflows.commands.v1": ("workflow_run_id", "WorkflowCommand"),
    "mindstream.workflows.events.v1": ("workflow_run_id", "WorkflowEvent"),
}


def test_registry_matches_architecture() -> None:
    assert {s.name: (s.key, s.message.__name__) for s in TOPICS} == ARCHITECTURE
    assert AGENTS.cleanup_policy == "compact"
    assert WORKFLOWS.cleanup_policy == "compact"
    assert CONTROL.cleanup_policy == "compact"
    assert all(s.cleanup_policy == "delete" for s in TOPICS
               if s not in (AGENTS, WORKFLOWS, CONTROL))
    assert len({s.message.ce_type for s in TOPICS}) == len(TOPICS)


def test_session_keyed_messages_have_session_id() -> None:
    for spec in TOPICS:
        if spec.key == "session_id":
            assert spec.partitions == 12
            assert "session_id" in spec.message.model_fields


def test_key_of_every_sample() -> None:
    keys = {type(m): spec_for_message(type(m)).key_of(m) for m in sample_messages()}
    assert keys[RunRequested] == b"sess-1"
    assert AGENTS.key_of(next(m for m in sample_messages() if type(m) is AGENTS.message)) == (
        b"support"
    )
    assert AUDIT.key_of(next(m for m in sample_messages() if type(m) is AUDIT.message)) == b"run-1"
    with pytest.raises(TypeError, match="carries RunRequested"):
        RUNS_REQUESTED.key_of(sample_messages()[2])


def test_names() -> None:
    assert RUNS_REQUESTED.dlq == "mindstream.runs.requested.v1.dlq"
    assert RUNS_REQUESTED.physical("t42.") == "t42.mindstream.runs.requested.v1"
    assert RUNS_REQUESTED.physical() == RUNS_REQUESTED.name
    assert RUNS_REQUESTED.version == 1
    assert topic("mindstream.audit.v1") is AUDIT
    with pytest.raises(KeyError, match=r"unknown topic 'nope'; known topics: mindstream\.agents"):
        topic("nope")
    assert sample_request() is not None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": "runs.requested.v1"}, "is not mindstream"),
        ({"name": "mindstream.Runs.v1"}, "is not mindstream"),
        ({"name": "mindstream.runs.requested"}, "is not mindstream"),
        ({"key": "nope"}, "not a field"),
        ({"key": "run_id.x"}, "not a field"),
        ({"partitions": 0}, "partitions"),
        ({"retention_ms": 0}, "retention"),
    ],
)
def test_spec_validation(changes: dict[str, object], message: str) -> None:
    fields = {
        "name": "mindstream.x.y.v1",
        "message": RunRequested,
        "key": "session_id",
        "partitions": 1,
        "retention_ms": 1,
        "cleanup_policy": "delete",
        "description": "d",
    } | changes
    with pytest.raises(ValueError, match=message):
        TopicSpec(**fields)  # type: ignore[arg-type]
