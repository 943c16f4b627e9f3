"""The degraded-mode switch: set in the control plane, followed by reasoning and memory.

While degraded, runs keep completing, but reasoning offers no knowledge search
and caps answer tokens, and memory learns nothing; each change is audited, and
the normal mode comes back the same way.
"""

from __future__ import annotations

from typing import Any

import pytest

from services.memory.app import wire
from services.memory.settings import MemoryServiceSettings
from shared.settings import KafkaSettings, MongoSettings
from tests.integration.reasoning_harness import agent, reasoning_stack
from tests.support.control_plane import by_action, running_control_plane
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

READER = {"id": "reader", "instructions": "You read.", "knowledge": True,
          "model": {"name": "scripted", "max_tokens": 1024}}


def _tools(request: dict[str, Any]) -> list[str]:
    return [t["function"]["name"] for t in request["body"].get("tools") or []]


def _max_tokens(request: dict[str, Any]) -> int:
    return int(request["body"]["max_tokens"])


async def test_degraded_mode_sheds_knowledge_tokens_and_learning(
    topics: KafkaSettings, mongo_settings: MongoSettings,
) -> None:
    script = {"rules": [{"name": "ok", "text": "Noted."}]}
    memory = wire(MemoryServiceSettings(consumer_concurrency=1), topics, mongo_settings,
                  http_port=0)
    async with reasoning_stack(topics, mongo_settings, script, [agent(READER)]) as rs, \
            memory.runtime, running_control_plane(topics, mongo_settings) as cp:
        assert rs.reasoning is not None and rs.reasoning.reasoner.control is not None
        control, learning = rs.reasoning.reasoner.control, memory.handlers.control
        assert learning is not None
        await rs.finished(await rs.ask("reader", "hello"))
        normal = rs.model.requests[-1]
        assert "knowledge_search" in _tools(normal) and _max_tokens(normal) == 1024

        answer = await cp.http.put("/api/v1/degradation", headers=cp.auth(), json={
            "degraded": True, "max_tokens": 256, "reason": "load test"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["version"] == 1 and answer.json()["degraded"] is True
        await eventually(lambda: control.degraded and learning.learning_off,
                         what="degraded mode seen by reasoning and memory")

        session = "s-degraded"
        shed = await rs.finished(await rs.ask("reader", "I'm vegetarian.", session=session))
        assert shed.status.value == "completed"
        request = rs.model.requests[-1]
        assert "knowledge_search" not in _tools(request) and _max_tokens(request) == 256
        # Memory handles a session's completions in order: once a later turn is recorded,
        # the vegetarian turn was handled, while degraded.
        later = await rs.finished(await rs.ask("reader", "hello again", session=session))
        await eventually(lambda: cp.db["messages"].find_one({"run_id": later.run_id}),
                         what="the later turn recorded")

        back = await cp.http.put("/api/v1/degradation", headers=cp.auth(),
                                 json={"degraded": False})
        assert back.json() == back.json() | {"degraded": False, "version": 2}
        await eventually(lambda: not control.degraded and not learning.degraded,
                         what="normal mode seen by reasoning and memory")
        await rs.finished(await rs.ask("reader", "I am a teacher.", session=session))
        assert _max_tokens(rs.model.requests[-1]) == 1024

        memories = cp.db["memories"]
        await eventually(lambda: memories.find_one({"text": {"$regex": "teacher"}}),
                         what="the teacher fact learned")
        assert await memories.find_one({"text": {"$regex": "vegetarian"}}) is None

        records = await cp.wait_audit(2, lambda r: r["action"].startswith("degradation."))
        assert [r["action"] for r in records] == ["degradation.enable", "degradation.disable"]
        assert await cp.audit_records(by_action("degradation.enable", outcome="success"))
        state = (await cp.http.get("/api/v1/degradation", headers=cp.auth())).json()
        assert state["degraded"] is False and state["version"] == 2
