"""System-wide operating state, set by the control plane, followed by every replica.

Published on a compacted topic with one key (``global``), so a replica that
starts reads the current state, and every change reaches every replica. A
degraded mode keeps core runs flowing under pressure by shedding extras:
knowledge search, learning new memories, long answers.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from schemas.base import Id, Message, ShortText, UtcDatetime
from schemas.common import Actor

__all__ = ["ControlState"]


class ControlState(Message):
    """The operating mode, and what a degraded mode switches off."""

    ce_type: ClassVar[str] = "mindstream.control.state"

    id: Id = Field(default="global", description="What the state applies to; the Kafka key.")
    version: int = Field(ge=1, description="Increases by one with every change.")
    degraded: bool = Field(
        default=False, description="Degraded mode: core runs keep flowing, extras are shed."
    )
    disable_knowledge: bool = Field(
        default=True, description="While degraded: agents are not offered knowledge search."
    )
    disable_memory_learning: bool = Field(
        default=True, description="While degraded: no new memories are learned from runs."
    )
    max_tokens: int | None = Field(
        default=512,
        ge=1,
        le=200_000,
        description="While degraded: most tokens per model answer (unset: the agent's own).",
    )
    reason: ShortText | None = Field(default=None, description="Why the mode was changed.")
    changed_by: Actor | None = Field(default=None, description="Who changed it.")
    changed_at: UtcDatetime = Field(description="When it was changed.")
