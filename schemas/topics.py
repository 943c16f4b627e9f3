"""The topic registry: every topic, declared once, with its contract.

Partitions: session-keyed topics get 12. Keying by session keeps one
session on one partition (per-session order without locks), and 12 divides
evenly among 1, 2, 3, 4, 6 or 12 replicas of a consumer group, so scaling
out never leaves a replica with double load. Partitions can be added later
but that moves sessions between partitions, so start with headroom.

``mindstream.knowledge.documents.v1`` is keyed by document id (versions of
one document stay ordered) with 3 partitions: low volume, large messages.
Its retention is 30 days; the memory service's MongoDB store is the durable
copy of the corpus.

``mindstream.agents.v1`` has 1 partition: it is small, compacted, and read
in full by every replica (no consumer group), so one partition gives a
single global order of definition changes at no cost. ``mindstream.audit.v1``
has 3: keyed by subject (the target's id) so the history of one thing stays
ordered, with modest volume.

``mindstream.control.v1`` is compacted with 1 partition and one key
(``global``): the operating state (degraded mode) every replica follows.

``mindstream.workflows.v1`` is compacted with 1 partition, like agents. The
workflow-run topics (requested, commands, events) are keyed by
``workflow_run_id``: one run's requests, commands and events stay in order on
one partition, while its agent steps run in their own sessions. Workflow
events are kept 30 days: they are the history an operator reads back.

Retention: runs and tool traffic is kept 7 days (enough to replay after an
outage or a bad deploy), streaming events 3 days (high volume, only useful
live and for recent debugging), completions 30 days (memory can re-learn
from them) and audit 90 days (the durable copy lives in MongoDB). Dead
letters are kept 30 days so an operator has time to inspect and re-drive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from schemas.agents import AgentDefinition
from schemas.audit import AuditEvent
from schemas.base import Message
from schemas.control import ControlState
from schemas.knowledge import KnowledgeDocument, KnowledgeQuery
from schemas.runs import RunCommand, RunCompleted, RunEvent, RunReady, RunRequested
from schemas.tools import ToolCall, ToolResult
from schemas.workflows import (
    WorkflowCommand,
    WorkflowDefinition,
    WorkflowEvent,
    WorkflowRequested,
)

__all__ = [
    "AGENTS",
    "AUDIT",
    "CONTROL",
    "DLQ_RETENTION_MS",
    "KNOWLEDGE_DOCUMENTS",
    "KNOWLEDGE_QUERIES",
    "RUNS_COMMANDS",
    "RUNS_COMPLETED",
    "RUNS_EVENTS",
    "RUNS_READY",
    "RUNS_REQUESTED",
    "TOOLS_CALLS",
    "TOOLS_RESULTS",
    "TOPICS",
    "TOPIC_NAME_PATTERN",
    "WORKFLOWS",
    "WORKFLOWS_COMMANDS",
    "WORKFLOWS_EVENTS",
    "WORKFLOWS_REQUESTED",
    "TopicSpec",
    "spec_for_message",
    "topic",
]

TOPIC_NAME_PATTERN = re.compile(r"^mindstream\.[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)?\.v[1-9][0-9]*$")
DLQ_RETENTION_MS = 30 * 24 * 3600 * 1000

_DAY_MS = 24 * 3600 * 1000
_SESSION_PARTITIONS = 12


@dataclass(frozen=True)
class TopicSpec:
    """A topic's name, message, key and configuration.

    ``key`` names the message field whose value is the Kafka key; a dotted
    path (``target.id``) reaches into a nested model.
    """

    name: str
    message: type[Message]
    key: str
    partitions: int
    retention_ms: int
    cleanup_policy: Literal["delete", "compact"]
    description: str

    def __post_init__(self) -> None:
        if not TOPIC_NAME_PATTERN.fullmatch(self.name):
            raise ValueError(f"topic name {self.name!r} is not mindstream.<domain>.<event>.v<N>")
        if self.partitions < 1:
            raise ValueError(f"{self.name}: partitions must be at least 1")
        if self.cleanup_policy == "delete" and self.retention_ms < 1:
            raise ValueError(f"{self.name}: a delete topic needs a positive retention_ms")
        model: type[BaseModel] | None = self.message
        for part in self.key.split("."):
            field = model.model_fields.get(part) if model is not None else None
            if field is None:
                raise ValueError(f"{self.name}: key {self.key!r} is not a field of the message")
            annotation = field.annotation
            model = None
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                model = annotation

    @property
    def version(self) -> int:
        return int(self.name.rsplit(".v", 1)[1])

    @property
    def dlq(self) -> str:
        """Name of the dead-letter topic."""
        return self.name + ".dlq"

    def key_of(self, message: Message) -> bytes:
        """The Kafka key of ``message`` (UTF-8 of the key field)."""
        if not isinstance(message, self.message):
            raise TypeError(
                f"{self.name} carries {self.message.__name__}, not {type(message).__name__}"
            )
        value: object = message
        for part in self.key.split("."):
            value = getattr(value, part)
        if not isinstance(value, str) or not value:
            raise ValueError(f"{self.name}: key {self.key!r} of the message is empty")
        return value.encode()

    def physical(self, prefix: str = "") -> str:
        """The topic's name on the broker; tests pass a unique prefix to stay isolated."""
        return prefix + self.name


def _session_topic(
    name: str, message: type[Message], retention_days: int, description: str
) -> TopicSpec:
    return TopicSpec(
        name=name,
        message=message,
        key="session_id",
        partitions=_SESSION_PARTITIONS,
        retention_ms=retention_days * _DAY_MS,
        cleanup_policy="delete",
        description=description,
    )


RUNS_REQUESTED = _session_topic(
    "mindstream.runs.requested.v1",
    RunRequested,
    7,
    "Public input: a client asks for an agent run. run_id is the idempotency key.",
)
RUNS_READY = _session_topic(
    "mindstream.runs.ready.v1",
    RunReady,
    7,
    "A request with its assembled context (history, summary, memories, knowledge).",
)
RUNS_EVENTS = _session_topic(
    "mindstream.runs.events.v1",
    RunEvent,
    3,
    "Step-by-step events of runs, for streaming, telemetry and audit.",
)
RUNS_COMPLETED = _session_topic(
    "mindstream.runs.completed.v1",
    RunCompleted,
    30,
    "The end of each run: output, turns, usage, metrics, or the reason it failed.",
)
RUNS_COMMANDS = _session_topic(
    "mindstream.runs.commands.v1",
    RunCommand,
    7,
    "Operator commands to runs: cancel, approve, reject.",
)
TOOLS_CALLS = _session_topic(
    "mindstream.tools.calls.v1",
    ToolCall,
    7,
    "Tool calls to execute; call_id is the idempotency key.",
)
KNOWLEDGE_QUERIES = _session_topic(
    "mindstream.knowledge.queries.v1",
    KnowledgeQuery,
    7,
    "Knowledge-base searches; answered on tools.results.",
)
TOOLS_RESULTS = _session_topic(
    "mindstream.tools.results.v1",
    ToolResult,
    7,
    "Results of tool calls and knowledge queries.",
)
KNOWLEDGE_DOCUMENTS = TopicSpec(
    name="mindstream.knowledge.documents.v1",
    message=KnowledgeDocument,
    key="document_id",
    partitions=3,
    retention_ms=30 * _DAY_MS,
    cleanup_policy="delete",
    description="Knowledge documents to ingest, replace or delete; keyed by document id.",
)
AGENTS = TopicSpec(
    name="mindstream.agents.v1",
    message=AgentDefinition,
    key="id",
    partitions=1,
    retention_ms=-1,
    cleanup_policy="compact",
    description="Agent definitions, compacted to the newest version of each agent.",
)
AUDIT = TopicSpec(
    name="mindstream.audit.v1",
    message=AuditEvent,
    key="target.id",
    partitions=3,
    retention_ms=90 * _DAY_MS,
    cleanup_policy="delete",
    description="Audited actions, keyed by subject (the target's id).",
)
CONTROL = TopicSpec(
    name="mindstream.control.v1",
    message=ControlState,
    key="id",
    partitions=1,
    retention_ms=-1,
    cleanup_policy="compact",
    description="System-wide operating state (degraded mode), compacted to the newest.",
)

WORKFLOWS = TopicSpec(
    name="mindstream.workflows.v1",
    message=WorkflowDefinition,
    key="id",
    partitions=1,
    retention_ms=-1,
    cleanup_policy="compact",
    description="Workflow definitions, compacted to the newest version of each workflow.",
)


def _workflow_run_topic(
    name: str, message: type[Message], retention_days: int, description: str
) -> TopicSpec:
    return TopicSpec(
        name=name,
        message=message,
        key="workflow_run_id",
        partitions=_SESSION_PARTITIONS,
        retention_ms=retention_days * _DAY_MS,
        cleanup_policy="delete",
        description=description,
    )


WORKFLOWS_REQUESTED = _workflow_run_topic(
    "mindstream.workflows.requested.v1",
    WorkflowRequested,
    7,
    "Start a workflow run; workflow_run_id is the idempotency key.",
)
WORKFLOWS_COMMANDS = _workflow_run_topic(
    "mindstream.workflows.commands.v1",
    WorkflowCommand,
    7,
    "Operator commands to workflow runs: cancel, approve, reject.",
)
WORKFLOWS_EVENTS = _workflow_run_topic(
    "mindstream.workflows.events.v1",
    WorkflowEvent,
    30,
    "Events of workflow runs (steps started and completed, approvals, the end).",
)

TOPICS: tuple[TopicSpec, ...] = (
    RUNS_REQUESTED,
    RUNS_READY,
    RUNS_EVENTS,
    RUNS_COMPLETED,
    RUNS_COMMANDS,
    TOOLS_CALLS,
    KNOWLEDGE_QUERIES,
    TOOLS_RESULTS,
    AGENTS,
    AUDIT,
    KNOWLEDGE_DOCUMENTS,
    CONTROL,
    WORKFLOWS,
    WORKFLOWS_REQUESTED,
    WORKFLOWS_COMMANDS,
    WORKFLOWS_EVENTS,
)

_BY_NAME = {spec.name: spec for spec in TOPICS}
_BY_MESSAGE = {spec.message: spec for spec in TOPICS}
if len(_BY_NAME) != len(TOPICS) or len({s.message.ce_type for s in TOPICS}) != len(TOPICS):
    raise RuntimeError("topic names and message ce_types must be unique")


def topic(name: str) -> TopicSpec:
    """The spec of a topic by its logical name (without test prefix)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        known = ", ".join(sorted(_BY_NAME))
        raise KeyError(f"unknown topic {name!r}; known topics: {known}") from None


def spec_for_message(message_type: type[Message]) -> TopicSpec:
    """The topic that carries ``message_type``."""
    try:
        return _BY_MESSAGE[message_type]
    except KeyError:
        raise KeyError(f"no topic carries {message_type.__name__}") from None
