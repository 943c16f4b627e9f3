"""Pieces shared by several messages: chat turns, token usage, actors."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, model_validator

from schemas.base import ContractModel, Id, JsonDict, LongText, Name, ToolName

__all__ = [
    "Actor",
    "ActorKind",
    "ChatMessage",
    "ChatRole",
    "ToolCallRequest",
    "Usage",
]


class ChatRole(StrEnum):
    """Who speaks in a chat turn."""

    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


class ToolCallRequest(ContractModel):
    """A tool call the model asked for inside an assistant turn."""

    id: Id = Field(description="Tool-call id; the matching tool turn carries it as tool_call_id.")
    name: ToolName = Field(description="Name of the tool the model wants to call.")
    arguments: JsonDict = Field(
        default_factory=dict, description="Arguments the model produced, as a JSON object."
    )


class ChatMessage(ContractModel):
    """One turn of a conversation, in the shape chat-completion APIs expect."""

    role: ChatRole = Field(description="Who speaks: system, user, assistant or tool.")
    content: LongText | None = Field(
        default=None,
        description="Text of the turn; null for an assistant turn that only calls tools.",
    )
    tool_calls: list[ToolCallRequest] = Field(
        default_factory=list,
        max_length=64,
        description="Tool calls requested by an assistant turn.",
    )
    tool_call_id: Id | None = Field(
        default=None, description="For a tool turn: the id of the call it answers."
    )
    name: Name | None = Field(
        default=None, description="Optional name of the speaker (e.g. the tool or agent)."
    )

    @model_validator(mode="after")
    def _roles_fit(self) -> ChatMessage:
        if self.tool_calls and self.role is not ChatRole.ASSISTANT:
            raise ValueError("only assistant turns may carry tool_calls")
        if self.role is ChatRole.TOOL and self.tool_call_id is None:
            raise ValueError("a tool turn needs tool_call_id")
        if self.role is not ChatRole.TOOL and self.tool_call_id is not None:
            raise ValueError("tool_call_id is only for tool turns")
        return self


class Usage(ContractModel):
    """Tokens spent on model calls."""

    prompt_tokens: int = Field(default=0, ge=0, description="Tokens sent to the model.")
    completion_tokens: int = Field(default=0, ge=0, description="Tokens the model produced.")

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
        )


class ActorKind(StrEnum):
    """What kind of principal acted."""

    USER = "user"
    SERVICE = "service"
    TOKEN = "token"  # noqa: S105 - an actor kind, not a secret


class Actor(ContractModel):
    """Who did something: a person, a service, or an API token."""

    kind: ActorKind = Field(description="user, service or token.")
    id: Id = Field(description="Id of the user, name of the service, or id of the token.")
