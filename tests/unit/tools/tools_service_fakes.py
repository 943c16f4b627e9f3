"""In-memory stand-ins for the tools service's Kafka and MongoDB sides, for handler tests.

:class:`FakeStore` keeps the same contract as :class:`ToolCallStore` (unique
call id, owner-conditional finish); :class:`RecordingBroker` sits under a real
:class:`Publisher`, so messages go through the real envelope and encoding.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.agents import AgentDefinition, ModelSettings
from schemas.audit import AuditEvent
from schemas.codec import decode
from schemas.envelope import Envelope
from schemas.tools import ToolCall, ToolResult
from services.tools.store import CallRecord, CallStatus, Payload

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


@dataclass
class Sent:
    topic: str
    envelope: Envelope
    body: bytes


@dataclass
class RecordingBroker:
    sent: list[Sent] = field(default_factory=list)

    async def publish(self, body: bytes, *, topic: str, key: bytes | None,
                      headers: dict[str, str], correlation_id: str | None) -> None:  # fmt: skip
        envelope = Envelope.from_headers([(k, v.encode()) for k, v in headers.items()])
        self.sent.append(Sent(topic, envelope, body))

    def results(self) -> list[tuple[Envelope, ToolResult]]:
        return [(s.envelope, decode(ToolResult, s.body, s.envelope))
                for s in self.sent if s.topic.endswith("tools.results.v1")]  # fmt: skip

    def audits(self) -> list[AuditEvent]:
        return [decode(AuditEvent, s.body, s.envelope)
                for s in self.sent if s.topic.endswith("audit.v1")]  # fmt: skip


class FakeStore:
    """Started markers and results, each inserted once per call id, like the real store."""

    def __init__(self) -> None:
        self.calls: dict[str, dict[str, Any]] = {}
        self.results: dict[str, dict[str, Any]] = {}
        self.payloads: dict[str, Payload] = {}
        self.fail_next_finish = 0

    async def get(self, call_id: str) -> CallRecord | None:
        done = self.results.get(call_id)
        if done is not None:
            return CallRecord(call_id, CallStatus.FINISHED, done["owner"], done["attempts"],
                              done["tool"], done["result"], done["outcome"])  # fmt: skip
        doc = self.calls.get(call_id)
        if doc is None:
            return None
        return CallRecord(call_id, CallStatus.STARTED, doc["owner"], doc["attempts"],
                          doc.get("tool", ""))  # fmt: skip

    async def start(self, call_id: str, *, owner: str, now: datetime, **fields: Any) -> bool:
        if call_id in self.calls:
            return False
        self.calls[call_id] = {"owner": owner, "attempts": 1, "started_at": now, **fields}
        return True

    async def take_over(self, call_id: str, *, owner: str, previous: str, now: datetime) -> bool:
        doc = self.calls.get(call_id)
        if doc is None or doc["owner"] != previous:
            return False
        doc.update(owner=owner, attempts=doc["attempts"] + 1)
        return True

    async def finish(self, call_id: str, **fields: Any) -> bool:
        if self.fail_next_finish:
            self.fail_next_finish -= 1
            raise ConnectionError("database went away")
        if call_id in self.results:
            return False
        self.results[call_id] = fields
        return True

    async def put_payload(self, ref_id: str, call_id: str, data: bytes, now: datetime) -> Payload:
        payload = Payload(ref_id, data, hashlib.sha256(data).hexdigest())
        self.payloads.setdefault(ref_id, payload)
        return self.payloads[ref_id]

    async def get_payload(self, ref_id: str) -> Payload | None:
        return self.payloads.get(ref_id)


def agent(tools: list[str], *, agent_id: str = "helper", **extra: Any) -> AgentDefinition:
    return AgentDefinition(id=agent_id, version=1, instructions="help",
                           model=ModelSettings(name="m"), tools=tools, **extra)  # fmt: skip


def tool_call(tool: str, arguments: dict[str, Any] | None = None, *, call_id: str = "call-1",
              agent_id: str = "helper", deadline_s: float = 30.0, **extra: Any) -> ToolCall:  # fmt: skip
    return ToolCall(call_id=call_id, run_id="run-1", session_id="s-1", agent_id=agent_id,
                    tool=tool, arguments=arguments or {},
                    deadline=datetime.now(UTC) + timedelta(seconds=deadline_s), **extra)  # fmt: skip

