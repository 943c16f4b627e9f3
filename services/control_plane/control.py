"""The global kill switch: while on, the control plane refuses every new run.

It lives in MongoDB so every replica of the API agrees. It guards the
control plane's submit path only: a client that publishes ``RunRequested``
straight to Kafka bypasses it (reasoning does not read it). To stop such
traffic too, pause the agents (a paused definition is refused by reasoning).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from services.control_plane.store import CONTROL_STATE
from shared.mongo import Doc

__all__ = ["KillSwitch"]

_ID = "kill_switch"


class KillSwitch:
    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self._coll = db[CONTROL_STATE]

    async def state(self) -> dict[str, Any]:
        doc = await self._coll.find_one({"_id": _ID}) or {}
        return {"enabled": bool(doc.get("enabled", False)), "reason": doc.get("reason"),
                "changed_by": doc.get("changed_by"), "changed_at": doc.get("changed_at")}

    async def set(self, enabled: bool, *, reason: str | None, changed_by: str,
                  now: datetime | None = None) -> dict[str, Any]:
        await self._coll.find_one_and_update(
            {"_id": _ID},
            {"$set": {"enabled": enabled, "reason": reason, "changed_by": changed_by,
                      "changed_at": now or datetime.now(UTC)}},
            upsert=True, return_document=ReturnDocument.AFTER)
        return await self.state()
