"""Tool calls and their results.

``call_id`` is the idempotency key end to end: the tools service keeps a
ledger keyed by it, so a redelivered or re-driven call returns the recorded
result instead of running the tool twice.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import ClassVar

from pydantic import Field, JsonValue, model_validator

from schemas.base import (
    AgentRef,
    ContractModel,
    Id,
    JsonDict,
    Label,
    Message,
    Sha256Hex,
    ShortText,
    ToolName,
    UtcDatetime,
)
from schemas.common import Actor

__all__ = [
    "MAX_INLINE_CONTENT_BYTES",
    "ContentRef",
    "ToolCall",
    "ToolError",
    "ToolErrorCode",
    "ToolResult",
]

MAX_INLINE_CONTENT_BYTES = 256 * 1024
"""Tool output larger than this (as JSON) is stored in MongoDB and sent as a ContentRef."""


class ToolCall(Message):
    """Run one tool for one run, before a deadline."""

    ce_type: ClassVar[str] = "mindstream.tools.call"

    call_id: Id = Field(description="Idempotency key of the call (the model's tool-call id).")
    run_id: Id = Field(description="Run the call belongs to.")
    session_id: Id = Field(description="Session of the run; the Kafka key.")
    agent_id: AgentRef = Field(description="Agent calling; the tool must be on its allowlist.")
    tool: ToolName = Field(description="Name of the tool.")
    arguments: JsonDict = Field(default_factory=dict, description="Arguments as a JSON object.")
    deadline: UtcDatetime = Field(description="After this instant the result is useless.")
    attempt: int = Field(default=1, ge=1, le=100, description="1 for the first try.")
    approved_by: Actor | None = Field(
        default=None,
        description="Operator who approved the call; a tool that requires approval runs only "
        "when this is set.",
    )


class ToolErrorCode(StrEnum):
    """Why a tool call failed; unavailable means a circuit breaker is open."""

    INVALID_ARGUMENTS = "invalid_arguments"
    NOT_ALLOWED = "not_allowed"
    UNKNOWN_TOOL = "unknown_tool"
    TIMEOUT = "timeout"
    UNAVAILABLE = "unavailable"
    REJECTED = "rejected"
    FAILED = "failed"


class ToolError(ContractModel):
    """Why a tool call did not succeed, in words the model can read."""

    code: ToolErrorCode = Field(description="Machine-readable class of the failure.")
    message: ShortText = Field(description="Human- and model-readable explanation.")


class ContentRef(ContractModel):
    """A large result stored out of band (architecture rule 7)."""

    ref_id: Id = Field(description="Id of the stored payload.")
    size_bytes: int = Field(ge=0, description="Size of the stored JSON in bytes.")
    sha256: Sha256Hex = Field(description="SHA-256 of the stored bytes, to verify on load.")
    media_type: Label = Field(default="json", description="Kind of the stored payload.")


class ToolResult(Message):
    """The outcome of a tool call (or a knowledge query)."""

    ce_type: ClassVar[str] = "mindstream.tools.result"

    call_id: Id = Field(description="The call this answers.")
    run_id: Id = Field(description="Run the call belongs to.")
    session_id: Id = Field(description="Session of the run; the Kafka key.")
    tool: ToolName = Field(description="Name of the tool that ran.")
    ok: bool = Field(description="True when the tool succeeded.")
    content: JsonValue = Field(
        default=None, description="The tool's JSON output, inline; null when stored by reference."
    )
    content_ref: ContentRef | None = Field(
        default=None, description="Where a large output is stored, instead of inline content."
    )
    error: ToolError | None = Field(default=None, description="Set exactly when ok is false.")
    duration_ms: int = Field(ge=0, description="Wall time the tool took, in milliseconds.")

    @model_validator(mode="after")
    def _outcome_is_consistent(self) -> ToolResult:
        if self.ok == (self.error is not None):
            raise ValueError("error must be set exactly when ok is false")
        if self.content_ref is not None and self.content is not None:
            raise ValueError("content and content_ref are exclusive")
        if self.content is not None:
            size = len(json.dumps(self.content, separators=(",", ":")).encode())
            if size > MAX_INLINE_CONTENT_BYTES:
                raise ValueError(
                    f"inline content is {size} bytes, above {MAX_INLINE_CONTENT_BYTES}; "
                    "store it and send content_ref"
                )
        return self
