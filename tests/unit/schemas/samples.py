"""Valid sample messages, one per topic, shared by the schema tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from schemas.agents import AgentDefinition, ModelSettings, TeamSettings
from schemas.audit import AuditEvent, AuditOutcome, AuditTarget
from schemas.base import Message
from schemas.common import Actor, ActorKind, ChatMessage, ChatRole, ToolCallRequest, Usage
from schemas.control import ControlState
from schemas.knowledge import KnowledgeDocument, KnowledgeHit, KnowledgeQuery
from schemas.runs import (
    MemoryItem,
    RunCommand,
    RunCommandKind,
    RunCompleted,
    RunContext,
    RunEvent,
    RunEventKind,
    RunReady,
    RunRequested,
    RunStatus,
)
from schemas.tools import ToolCall, ToolResult
from schemas.workflows import (
    StepType,
    WorkflowCommand,
    WorkflowCommandKind,
    WorkflowDefinition,
    WorkflowEvent,
    WorkflowEventKind,
    WorkflowRequested,
    WorkflowStep,
)

T0 = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def sample_request() -> RunRequested:
    return RunRequested(
        run_id="run-1",
        agent_id="support@2",
        session_id="sess-1",
        user_id="user-1",
        input="Where is my order?",
        metadata={"channel": "web"},
        requested_at=T0,
    )


def sample_messages() -> list[Message]:
    request = sample_request()
    hit = KnowledgeHit(chunk_id="c1", document_id="d1", text="Orders ship in 2 days.", score=0.8)
    return [
        request,
        RunReady(
            run_id="run-1",
            session_id="sess-1",
            request=request,
            context=RunContext(
                history=[ChatMessage(role=ChatRole.USER, content="hi")],
                summary="Greeted.",
                memories=[MemoryItem(id="m1", text="Prefers email.", topic="preferences")],
                knowledge=[hit],
                token_estimate=42,
            ),
            prepared_at=T0,
        ),
        RunEvent(
            run_id="run-1",
            session_id="sess-1",
            agent_id="support@2",
            seq=3,
            kind=RunEventKind.TOOL_REQUESTED,
            at=T0,
            call_id="call-1",
            tool="lookup_order",
        ),
        RunCompleted(
            run_id="run-1",
            session_id="sess-1",
            agent_id="support@2",
            user_id="user-1",
            status=RunStatus.COMPLETED,
            output="It ships tomorrow.",
            messages=[
                ChatMessage(role=ChatRole.USER, content="Where is my order?"),
                ChatMessage(
                    role=ChatRole.ASSISTANT,
                    tool_calls=[ToolCallRequest(id="call-1", name="lookup_order")],
                ),
                ChatMessage(role=ChatRole.TOOL, content='{"eta": 1}', tool_call_id="call-1"),
                ChatMessage(role=ChatRole.ASSISTANT, content="It ships tomorrow."),
            ],
            usage=Usage(prompt_tokens=10, completion_tokens=5),
            completed_at=T0,
        ),
        RunCommand(
            command_id="cmd-1",
            run_id="run-1",
            session_id="sess-1",
            command=RunCommandKind.APPROVE,
            actor=Actor(kind=ActorKind.USER, id="ops"),
            call_id="call-1",
            issued_at=T0,
        ),
        ToolCall(
            call_id="call-1",
            run_id="run-1",
            session_id="sess-1",
            agent_id="support@2",
            tool="lookup_order",
            arguments={"order": "A-1"},
            deadline=T0 + timedelta(seconds=30),
        ),
        KnowledgeQuery(
            call_id="call-2",
            run_id="run-1",
            session_id="sess-1",
            agent_id="support@2",
            query="shipping time",
        ),
        ToolResult(
            call_id="call-2",
            run_id="run-1",
            session_id="sess-1",
            tool="knowledge_search",
            ok=True,
            content={"hits": [hit.model_dump(mode="json")]},
            duration_ms=12,
        ),
        AgentDefinition(
            id="support",
            version=2,
            instructions="Help customers.",
            model=ModelSettings(name="gpt-4o-mini"),
            tools=["lookup_order", "refund"],
            require_approval=["refund"],
            team=TeamSettings(members=["billing", "shipping@1"]),
        ),
        AuditEvent(
            event_id="ev-1",
            time=T0,
            actor=Actor(kind=ActorKind.SERVICE, id="reasoning"),
            action="run.started",
            target=AuditTarget(kind="run", id="run-1"),
            outcome=AuditOutcome.SUCCESS,
        ),
        KnowledgeDocument(
            document_id="doc-shipping",
            source="docs/shipping.md",
            title="Shipping",
            text="# Shipping\n\nOrders ship within two days.",
            metadata={"lang": "en"},
            published_at=T0,
        ),
        ControlState(version=1, degraded=True, reason="overload", changed_at=T0),
        WorkflowDefinition(
            id="review",
            version=1,
            steps=[WorkflowStep(id="draft", type=StepType.AGENT, agent="writer", input="{{input}}")],
        ),
        WorkflowRequested(
            workflow_run_id="wr-1",
            workflow_id="review",
            input="Write it.",
            user_id="user-1",
            requested_at=T0,
        ),
        WorkflowCommand(
            command_id="wcmd-1",
            workflow_run_id="wr-1",
            command=WorkflowCommandKind.CANCEL,
            actor=Actor(kind=ActorKind.USER, id="ops"),
            issued_at=T0,
        ),
        WorkflowEvent(
            workflow_run_id="wr-1",
            workflow_id="review@1",
            seq=0,
            kind=WorkflowEventKind.STARTED,
            at=T0,
        ),
    ]
