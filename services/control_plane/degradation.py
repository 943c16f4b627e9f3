"""The degraded-mode switch: stored here, published to ``mindstream.control.v1``.

Every replica of every service follows the compacted control topic
(:class:`shared.control_state.ControlView`): reasoning stops offering
knowledge search and caps answer tokens, memory stops retrieving knowledge
into contexts and stops learning new memories. Core runs keep flowing.

The version is reserved first (an atomic increment in ``control_state``), then
the state is published, then recorded: a failed publish only skips a number,
and a replica never sees two states with one version.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from schemas.common import Actor
from schemas.control import ControlState
from schemas.envelope import deterministic_id
from schemas.topics import CONTROL
from services.control_plane.store import CONTROL_STATE
from shared.kafka.publisher import Publisher
from shared.mongo import Doc

__all__ = ["DegradationSwitch"]

_ID = "degradation"


class DegradationSwitch:
    def __init__(self, db: AsyncDatabase[Doc], publisher: Publisher) -> None:
        self._coll = db[CONTROL_STATE]
        self._publisher = publisher

    async def state(self) -> dict[str, Any]:
        doc = await self._coll.find_one({"_id": _ID}) or {}
        state = doc.get("state") or {}
        return {"degraded": bool(state.get("degraded", False)),
                "disable_knowledge": state.get("disable_knowledge", True),
                "disable_memory_learning": state.get("disable_memory_learning", True),
                "max_tokens": state.get("max_tokens", 512), "reason": state.get("reason"),
                "version": int(state.get("version", 0)),
                "changed_by": (state.get("changed_by") or {}).get("id"),
                "changed_at": state.get("changed_at")}

    async def set(self, *, degraded: bool, disable_knowledge: bool, disable_memory_learning: bool,
                  max_tokens: int | None, reason: str | None, actor: Actor,
                  now: datetime) -> dict[str, Any]:
        reserved = await self._coll.find_one_and_update(
            {"_id": _ID}, {"$inc": {"next_version": 1}}, upsert=True,
            return_document=ReturnDocument.AFTER)
        state = ControlState(version=int(reserved["next_version"]), degraded=degraded,
                             disable_knowledge=disable_knowledge,
                             disable_memory_learning=disable_memory_learning,
                             max_tokens=max_tokens, reason=reason, changed_by=actor,
                             changed_at=now)
        await self._publisher.publish(CONTROL, state, message_id=deterministic_id(
            "control", state.id, str(state.version)))
        await self._coll.update_one(
            {"_id": _ID, "$or": [{"state.version": {"$lt": state.version}},
                                 {"state": {"$exists": False}}]},
            {"$set": {"state": state.model_dump(mode="json")}})
        return await self.state()
