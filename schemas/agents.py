"""Agent definitions, published on a compacted topic keyed by agent id.

The topic holds the newest version of each agent; services keep an
in-memory view of it. A run may pin an older version (``support@3``), so
consumers keep the versions they have seen, not only the latest.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from pydantic import Field, field_validator, model_validator

from schemas.base import (
    AgentId,
    AgentRef,
    ContractModel,
    JsonDict,
    Message,
    Name,
    ShortText,
    Text,
    ToolName,
    UtcDatetime,
)
from schemas.runs import MAX_DELEGATION_DEPTH

__all__ = [
    "AgentDefinition",
    "GuardrailSettings",
    "InjectionPolicy",
    "Limits",
    "MemorySettings",
    "ModelSettings",
    "PiiPolicy",
    "Rollout",
    "RolloutState",
    "TeamMode",
    "TeamSettings",
    "split_agent_ref",
]


def split_agent_ref(ref: str) -> tuple[str, int | None]:
    """``"support@3"`` -> ``("support", 3)``; ``"support"`` -> ``("support", None)``."""
    agent_id, sep, version = ref.partition("@")
    return agent_id, int(version) if sep else None


def _refuse_duplicates(values: list[str], what: str) -> None:
    seen: set[str] = set()
    dupes: set[str] = set()
    for value in values:
        (dupes if value in seen else seen).add(value)
    if dupes:
        raise ValueError(f"duplicate {what}: {', '.join(sorted(dupes))}")


class ModelSettings(ContractModel):
    """Which model the agent uses, and how."""

    name: Name = Field(description="Model name as the provider knows it.")
    base_url: ShortText | None = Field(
        default=None,
        pattern=r"^https?://\S+$",
        description="OpenAI-compatible endpoint; unset means the service default.",
    )
    temperature: float = Field(default=0.2, ge=0.0, le=2.0, description="Sampling temperature.")
    max_tokens: int = Field(default=1024, ge=1, le=200_000, description="Most tokens per answer.")


class MemorySettings(ContractModel):
    """How much of the past the agent sees, and whether it learns."""

    history_messages: int = Field(default=20, ge=0, le=500, description="Recent turns to include.")
    token_budget: int = Field(
        default=4000, ge=0, le=1_000_000, description="Most tokens of context memory assembles."
    )
    learn: bool = Field(default=True, description="Extract durable facts after each run.")


class InjectionPolicy(StrEnum):
    """What to do on suspected prompt injection: nothing, flag in events, or refuse."""

    OFF = "off"
    FLAG = "flag"
    BLOCK = "block"


class PiiPolicy(StrEnum):
    """What to do with personal data: nothing, mask it, or refuse."""

    OFF = "off"
    REDACT = "redact"
    BLOCK = "block"


class GuardrailSettings(ContractModel):
    """Checks before the model (input) and after it (output)."""

    prompt_injection: InjectionPolicy = Field(
        default=InjectionPolicy.FLAG, description="On suspected prompt injection in the input."
    )
    pii: PiiPolicy = Field(default=PiiPolicy.OFF, description="On personal data in the input.")
    output_pii: PiiPolicy = Field(
        default=PiiPolicy.OFF, description="On personal data in the model's output."
    )


class Limits(ContractModel):
    """Ceilings that stop a run from running away."""

    max_model_calls: int = Field(default=8, ge=1, le=100, description="Model calls per run.")
    max_tool_calls: int = Field(default=16, ge=0, le=500, description="Tool calls per run.")
    deadline_seconds: int = Field(
        default=300, ge=1, le=86_400, description="Wall time a run may take, waits included."
    )
    token_budget: int = Field(
        default=100_000, ge=1, le=10_000_000, description="Tokens a run may spend."
    )


class TeamMode(StrEnum):
    """How a team uses its members."""

    ROUTE = "route"
    COORDINATE = "coordinate"
    BROADCAST = "broadcast"


class TeamSettings(ContractModel):
    """Members the agent delegates to, and how.

    route: pick one member and return its answer. coordinate: call members
    as tools and compose an answer. broadcast: ask every member, then merge.
    """

    members: list[AgentRef] = Field(
        min_length=1, max_length=32, description="Agents this one may delegate to."
    )
    mode: TeamMode = Field(default=TeamMode.ROUTE, description="route, coordinate or broadcast.")
    max_depth: int = Field(
        default=2, ge=1, le=MAX_DELEGATION_DEPTH, description="Deepest delegation chain allowed."
    )
    max_fanout: int = Field(
        default=4, ge=1, le=32, description="Most child runs open at once from one run."
    )

    @field_validator("members")
    @classmethod
    def _members_unique(cls, members: list[str]) -> list[str]:
        _refuse_duplicates([split_agent_ref(m)[0] for m in members], "team member")
        return members

    @model_validator(mode="after")
    def _broadcast_fits(self) -> TeamSettings:
        if self.mode is TeamMode.BROADCAST and len(self.members) > self.max_fanout:
            raise ValueError("broadcast to more members than max_fanout allows")
        return self


class RolloutState(StrEnum):
    """A canary in progress, or one rolled back (every session back on the stable version)."""

    ACTIVE = "active"
    ROLLED_BACK = "rolled_back"


class Rollout(ContractModel):
    """A canary rollout: new sessions of unpinned runs split between two versions.

    Set on the newest definition of the agent, so every replica following the
    agents topic sees the same assignment. A session goes to the candidate when
    a stable hash of its id falls below ``candidate_share``, so it stays on one
    version; runs pinned to ``agent@N`` are not affected. Pausing and resuming
    (new versions of the same content) keep the rollout; a new version with
    new content replaces it.
    """

    stable_version: int = Field(ge=1, description="Version most sessions keep using.")
    candidate_version: int = Field(ge=1, description="Version being tried on a share of sessions.")
    candidate_share: float = Field(
        ge=0.0, le=1.0, description="Share of sessions sent to the candidate (0.1 = 10%)."
    )
    started_at: UtcDatetime = Field(description="When the canary started.")
    state: RolloutState = Field(
        default=RolloutState.ACTIVE, description="active, or rolled_back (all on stable)."
    )
    reason: ShortText | None = Field(default=None, description="Why it was rolled back, if so.")

    @model_validator(mode="after")
    def _two_versions(self) -> Rollout:
        if self.stable_version == self.candidate_version:
            raise ValueError("stable_version and candidate_version must differ")
        return self


class AgentDefinition(Message):
    """Everything that makes an agent: instructions, model, tools, limits, team."""

    ce_type: ClassVar[str] = "mindstream.agents.definition"

    id: AgentId = Field(description="Stable id of the agent; the Kafka key.")
    version: int = Field(ge=1, description="Increases by one with every change.")
    description: ShortText = Field(
        default="", description="What the agent is for (shown to teams)."
    )
    instructions: Text = Field(min_length=1, description="System prompt of the agent.")
    model: ModelSettings = Field(description="Model and sampling settings.")
    tools: list[ToolName] = Field(
        default_factory=list, max_length=64, description="Allowlist of tools the agent may call."
    )
    require_approval: list[ToolName] = Field(
        default_factory=list,
        max_length=64,
        description="Tools (from the allowlist) whose calls wait for an operator's approval.",
    )
    knowledge: bool = Field(default=False, description="May search the knowledge base.")
    memory: MemorySettings = Field(default_factory=MemorySettings, description="Context settings.")
    guardrails: GuardrailSettings = Field(
        default_factory=GuardrailSettings, description="Input and output checks."
    )
    limits: Limits = Field(default_factory=Limits, description="Per-run ceilings.")
    team: TeamSettings | None = Field(default=None, description="Members to delegate to, if any.")
    paused: bool = Field(default=False, description="New runs of a paused agent are refused.")
    output_schema: JsonDict | None = Field(
        default=None, description="JSON Schema (type object) the final answer must satisfy."
    )
    updated_at: UtcDatetime | None = Field(default=None, description="When this version was made.")
    rollout: Rollout | None = Field(
        default=None,
        description="Canary in progress: which sessions of unpinned runs go to which version. "
        "Republished on the same version when it changes (it routes, it is not behaviour).",
    )

    @field_validator("tools", "require_approval")
    @classmethod
    def _tools_unique(cls, tools: list[str]) -> list[str]:
        _refuse_duplicates(tools, "tool")
        return tools

    @field_validator("output_schema")
    @classmethod
    def _schema_is_object(cls, schema: JsonDict | None) -> JsonDict | None:
        if schema is not None and schema.get("type") != "object":
            raise ValueError('output_schema must be a JSON Schema with "type": "object"')
        return schema

    @model_validator(mode="after")
    def _consistent(self) -> AgentDefinition:
        outside = sorted(set(self.require_approval) - set(self.tools))
        if outside:
            raise ValueError(f"require_approval names tools not allowed: {', '.join(outside)}")
        if self.team is not None and any(
            split_agent_ref(m)[0] == self.id for m in self.team.members
        ):
            raise ValueError("a team cannot list its own agent as a member")
        return self
