"""Pins the public surface of every schemas module: a change here is a deliberate API change."""

from __future__ import annotations

import importlib

import pytest

pytestmark = pytest.mark.unit

PUBLIC = {
    "schemas": [
        "TOPICS", "ContractError", "Envelope", "EnvelopeError", "Message", "TopicSpec",
        "decode", "deterministic_id", "encode", "topic",
    ],
    "schemas.base": [
        "ID_PATTERN", "AgentId", "AgentRef", "ContractModel", "Id", "JsonDict", "Label",
        "LongText", "Message", "Metadata", "Name", "Sha256Hex", "ShortText", "Text", "ToolName",
        "TopicName", "UtcDatetime",
    ],
    "schemas.errors": ["ContractError", "EnvelopeError"],
    "schemas.common": [
        "Actor", "ActorKind", "ChatMessage", "ChatRole", "ToolCallRequest", "Usage",
    ],
    "schemas.knowledge": [
        "KNOWLEDGE_TOOL", "MAX_DOCUMENT_CHARS", "KnowledgeDocument", "KnowledgeHit",
        "KnowledgeQuery",
    ],
    "schemas.tools": [
        "MAX_INLINE_CONTENT_BYTES", "ContentRef", "ToolCall", "ToolError", "ToolErrorCode",
        "ToolResult",
    ],
    "schemas.runs": [
        "MAX_DELEGATION_DEPTH", "MemoryItem", "RunCommand", "RunCommandKind", "RunCompleted",
        "RunContext", "RunEvent", "RunEventKind", "RunMetrics", "RunPriority", "RunReady",
        "RunRequested", "RunStatus",
    ],
    "schemas.agents": [
        "AgentDefinition", "GuardrailSettings", "InjectionPolicy", "Limits", "MemorySettings",
        "ModelSettings", "PiiPolicy", "Rollout", "RolloutState", "TeamMode", "TeamSettings",
        "split_agent_ref",
    ],
    "schemas.audit": ["AuditEvent", "AuditOutcome", "AuditTarget"],
    "schemas.envelope": [
        "CONTENT_TYPE", "HEADER_CAUSATION", "HEADER_CONTENT_TYPE", "HEADER_CORRELATION",
        "HEADER_DLQ_OFFSET", "HEADER_DLQ_PARTITION", "HEADER_DLQ_REASON", "HEADER_DLQ_TOPIC",
        "HEADER_ID", "HEADER_SCHEMA_VERSION", "HEADER_SOURCE", "HEADER_SPECVERSION",
        "HEADER_TIME", "HEADER_TRACEPARENT", "HEADER_TYPE", "MINDSTREAM_NAMESPACE",
        "SPEC_VERSION", "Envelope", "EnvelopeError", "deterministic_id", "header_json_schema",
    ],
    "schemas.codec": [
        "MAX_BODY_BYTES", "ContractError", "decode", "describe_validation_error", "encode",
    ],
    "schemas.upcast": ["Upcaster", "register_upcaster", "registered_upcasters", "upcast"],
    "schemas.topics": [
        "AGENTS", "AUDIT", "CONTROL", "DLQ_RETENTION_MS", "KNOWLEDGE_DOCUMENTS", "KNOWLEDGE_QUERIES",
        "RUNS_COMMANDS",
        "RUNS_COMPLETED", "RUNS_EVENTS", "RUNS_READY", "RUNS_REQUESTED", "TOOLS_CALLS",
        "TOOLS_RESULTS", "TOPICS", "TOPIC_NAME_PATTERN", "TopicSpec", "spec_for_message", "topic",
        "WORKFLOWS", "WORKFLOWS_COMMANDS", "WORKFLOWS_EVENTS", "WORKFLOWS_REQUESTED",
    ],
    "schemas.control": ["ControlState"],
    "schemas.workflows": [
        "STEP_REF", "TERMINAL_KINDS", "Check", "RetrySpec", "StepType", "WorkflowCommand",
        "WorkflowCommandKind", "WorkflowDefinition", "WorkflowEvent", "WorkflowEventKind",
        "WorkflowRequested", "WorkflowStep", "agent_refs", "graph_problems", "step_refs",
    ],
    "schemas.export": [
        "ASYNCAPI_VERSION", "JSON_SCHEMA_DIALECT", "asyncapi_document", "check_all",
        "default_root", "expected_files", "export_all", "render_json", "topic_json_schema",
    ],
    "schemas.compat": ["check_compatible", "check_snapshots", "contract_path", "snapshot_all"],
}  # fmt: skip


@pytest.mark.parametrize("module_name", sorted(PUBLIC))
def test_all_is_pinned(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert sorted(module.__all__) == sorted(PUBLIC[module_name])
    for name in module.__all__:
        assert hasattr(module, name), f"{module_name}.{name} is exported but missing"


def test_every_module_is_pinned() -> None:
    import pkgutil

    import schemas

    found = {f"schemas.{m.name}" for m in pkgutil.iter_modules(schemas.__path__)}
    assert found | {"schemas"} == set(PUBLIC)
