"""The public surface of the reasoning modules, pinned: a change here is deliberate."""

from __future__ import annotations

import importlib

import pytest

pytestmark = pytest.mark.unit

SURFACE = {
    "services.reasoning.errors": [
        "Disposition",
        "IllegalTransition",
        "ModelCircuitOpenError",
        "ModelError",
        "ModelProtocolError",
        "ModelRequestError",
        "ModelUnavailableError",
        "ReasoningError",
        "StructuredOutputError",
    ],
    "services.reasoning.model": [
        "DeltaCallback",
        "ModelClient",
        "ModelClientConfig",
        "ModelRequest",
        "ModelResponse",
        "ModelToolCall",
        "ModelUsage",
        "is_transient",
    ],
    "services.reasoning.guardrails": [
        "Finding",
        "GuardrailAction",
        "GuardrailPolicy",
        "GuardrailVerdict",
        "PiiKind",
        "check_input",
        "check_output",
        "detect_pii",
        "injection_score",
        "luhn_valid",
    ],
    "services.reasoning.state": [
        "TERMINAL",
        "Approve",
        "CallStatus",
        "Cancel",
        "Complete",
        "Decision",
        "Fail",
        "ModelClaim",
        "ModelReplied",
        "PendingCall",
        "Reject",
        "RequestedCall",
        "RunEvent",
        "RunLimits",
        "RunState",
        "RunStatus",
        "Start",
        "ToolResult",
        "check_delegation",
        "check_limits",
        "check_tool_budget",
        "next_step",
        "transition",
    ],
    "services.reasoning.handlers": ["Reasoner", "ReasonerConfig", "guardrail_policy",
                                    "is_child_completion", "tool_label"],
    "services.reasoning.toolbox": [
        "DELEGATE_TOOL",
        "ROUTE_TOOL",
        "Plan",
        "ToolCatalog",
        "child_session",
        "plan_calls",
    ],
    "services.reasoning.store": [
        "AGENT_VERSIONS",
        "INDEXES",
        "RUNS",
        "AgentVersionStore",
        "OutboxItem",
        "RunStore",
        "StoredRun",
        "Sweepable",
    ],
    "services.reasoning.outbox": ["SERVICE_ACTOR", "Step", "clip"],
    "services.reasoning.deltas": ["DeltaBatcher"],
    "services.reasoning.agents": ["AgentBook"],
    "services.reasoning.app": ["ReasoningApp", "assemble", "build"],
    "services.reasoning.settings": ["ReasoningSettings", "model_config_for",
                                    "overload_config_for"],
    "services.reasoning.canary": ["bucket", "route"],
    "services.reasoning.overload": ["PRIORITIES", "Admission", "AimdLimit", "OverloadConfig",
                                    "Overloaded"],
    "services.reasoning.degradation": ["shape"],
    "services.reasoning.protection": ["is_capacity_error", "protect"],
    "services.reasoning.json_schema": ["validate"],
    "mindstream.testing.scripted_model": [
        "EMBEDDING_DIM",
        "Rule",
        "Script",
        "ScriptError",
        "ScriptedModelServer",
        "build_app",
        "hashing_embedding",
        "load_script",
        "main",
    ],
}


@pytest.mark.parametrize("module", sorted(SURFACE))
def test_public_surface_is_pinned(module: str) -> None:
    mod = importlib.import_module(module)
    assert sorted(mod.__all__) == sorted(SURFACE[module])
    assert all(hasattr(mod, name) for name in mod.__all__)


@pytest.mark.parametrize(
    ("name", "disposition"),
    [
        ("ModelUnavailableError", "fail_run"),
        ("ModelCircuitOpenError", "fail_run"),
        ("ModelProtocolError", "fail_run"),
        ("StructuredOutputError", "fail_run"),
        ("ModelRequestError", "fail_run"),
        ("IllegalTransition", "dead_letter"),
    ],
)
def test_every_error_says_what_happens_to_the_message(name: str, disposition: str) -> None:
    errors = importlib.import_module("services.reasoning.errors")
    assert getattr(errors, name).disposition == disposition
