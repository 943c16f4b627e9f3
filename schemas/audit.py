"""Audit events: who did what to which thing, and with what outcome.

The control plane stores them in an append-only, hash-chained log; the
``before_digest``/``after_digest`` pair lets an auditor verify a change
without the audit log holding the (possibly sensitive) documents themselves.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from pydantic import Field

from schemas.base import (
    ContractModel,
    Id,
    JsonDict,
    Label,
    Message,
    Sha256Hex,
    ShortText,
    UtcDatetime,
)
from schemas.common import Actor

__all__ = ["AuditEvent", "AuditOutcome", "AuditTarget"]


class AuditOutcome(StrEnum):
    """How an audited action ended: done, refused by policy, or failed."""

    SUCCESS = "success"
    REFUSED = "refused"
    FAILED = "failed"


class AuditTarget(ContractModel):
    """The thing acted on; its id is the Kafka key (the audit subject)."""

    kind: Label = Field(description="Kind of thing: agent, run, tool_call, token, session...")
    id: Id = Field(description="Id of the thing.")


class AuditEvent(Message):
    """One audited action."""

    ce_type: ClassVar[str] = "mindstream.audit.event"

    event_id: Id = Field(description="Unique id; the audit log refuses a second copy.")
    time: UtcDatetime = Field(description="When the action happened.")
    actor: Actor = Field(description="Who acted.")
    action: str = Field(
        pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$",
        max_length=128,
        description="Dotted verb, e.g. 'run.started', 'agent.updated', 'tool.refused'.",
    )
    target: AuditTarget = Field(description="What was acted on.")
    outcome: AuditOutcome = Field(description="success, refused or failed.")
    reason: ShortText | None = Field(default=None, description="Why, for refused or failed.")
    before_digest: Sha256Hex | None = Field(
        default=None, description="SHA-256 of the target before the action, if it changed."
    )
    after_digest: Sha256Hex | None = Field(
        default=None, description="SHA-256 of the target after the action, if it changed."
    )
    chain: Id = Field(default="global", description="Hash chain the event is appended to.")
    details: JsonDict = Field(
        default_factory=dict, description="Small extra facts; never secrets or full documents."
    )
