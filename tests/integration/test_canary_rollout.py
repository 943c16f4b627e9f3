"""Canaries on real Kafka and FerretDB: sessions split by share, and an automatic rollback.

Reasoning routes each new session by the rollout on the agent's newest
definition. ``shop`` (started with the CLI) sends 20% of 200 sessions to a
candidate, each session where its bucket says. ``cart`` (started through the
API) has a broken candidate whose model answers 400: the control plane judges
it per window (shortened here) from its runs view, rolls it back after two
failing windows in a row, audits why, and every new session is on the stable
version again.
"""

from __future__ import annotations

import asyncio

import pytest

from mindstream.cli.main import main
from schemas.agents import AgentDefinition, RolloutState
from schemas.audit import AuditEvent
from services.reasoning.canary import bucket
from shared.agent_registry import AgentRegistry
from shared.settings import KafkaSettings, MongoSettings
from tests.integration.reasoning_harness import agent, reasoning_stack
from tests.support.control_plane import running_control_plane
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

SCRIPT = {"rules": [
    {"name": "broken", "match": {"system": "You are broken"}, "status": 400,
     "message": "the candidate is broken"},
    {"name": "fine", "text": "fine"},
]}


def _agent(agent_id: str, who: str, version: int) -> AgentDefinition:
    return agent({"id": agent_id, "instructions": who, "model": {"name": "scripted"}}, version)


def _state(registry: AgentRegistry, agent_id: str) -> RolloutState | None:
    d = registry.get(agent_id)
    return d.rollout.state if d is not None and d.rollout is not None else None


@pytest.fixture
def cli_env(topics: KafkaSettings, mongo_settings: MongoSettings,
            monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"KAFKA_BOOTSTRAP_SERVERS": topics.bootstrap_servers,
                        "MINDSTREAM_TOPIC_PREFIX": topics.topic_prefix,
                        "MONGODB_URI": mongo_settings.uri.get_secret_value(),
                        "MINDSTREAM_DB": mongo_settings.database}.items():
        monkeypatch.setenv(name, value)


@pytest.mark.usefixtures("cli_env")
async def test_a_canary_gets_its_share_of_sessions_and_keeps_them(
    topics: KafkaSettings, mongo_settings: MongoSettings, capsys: pytest.CaptureFixture[str],
) -> None:
    agents = [_agent("shop", "You are stable.", 1), _agent("shop", "You are new.", 2)]
    async with reasoning_stack(topics, mongo_settings, SCRIPT, agents,
                               consumer_concurrency=3) as rs:
        assert rs.reasoning is not None
        registry = rs.reasoning.agents.registry
        assert await asyncio.to_thread(main, ["canary", "start", "shop", "--candidate", "2",
                                              "--share", "0.2"]) == 0
        assert "canary started: shop@2 on 20% of new sessions, @1 on the rest" in (
            capsys.readouterr().out)
        await eventually(lambda: _state(registry, "shop") is RolloutState.ACTIVE,
                         what="shop canary active", timeout_s=15)
        sessions = {await rs.ask("shop", "hello", session=f"shop-{i}"): f"shop-{i}"
                    for i in range(200)}
        done = await rs.completed.wait(lambda m: m.run_id in sessions, count=200, timeout=150)
        on_candidate = [m for m in done if m.agent_id == "shop@2"]
        assert 25 <= len(on_candidate) <= 55, len(on_candidate)  # 40 ± 15
        assert all((m.agent_id == "shop@2") == (bucket(sessions[m.run_id]) < 0.2) for m in done)
        assert all(m.status.value == "completed" for m in done)
        # A session stays on its version; a pinned run is never rerouted.
        again = await rs.ask("shop", "hello", session=on_candidate[0].session_id)
        pinned = await rs.ask("shop@1", "hello", session=on_candidate[0].session_id)
        assert (await rs.finished(again)).agent_id == "shop@2"
        assert (await rs.finished(pinned)).agent_id == "shop@1"

        assert await asyncio.to_thread(main, ["canary", "promote", "shop"]) == 0
        await eventually(lambda: _state(registry, "shop") is None, what="shop canary gone",
                         timeout_s=15)
        last = await rs.ask("shop", "hello", session="shop-1")  # a stable-bucket session
        assert (await rs.finished(last)).agent_id == "shop@2"
        promoted = await rs.audit.wait(lambda e: isinstance(e, AuditEvent)
                                       and e.action == "agent.canary.promoted")
        assert promoted[0].actor.id.startswith("cli:")


@pytest.mark.usefixtures("cli_env")
async def test_a_failing_canary_is_rolled_back_after_two_failing_windows(
    topics: KafkaSettings, mongo_settings: MongoSettings, capsys: pytest.CaptureFixture[str],
) -> None:
    agents = [_agent("cart", "You are stable.", 1), _agent("cart", "You are broken.", 2)]
    async with reasoning_stack(topics, mongo_settings, SCRIPT, agents,
                               consumer_concurrency=3) as rs, \
            running_control_plane(topics, mongo_settings, canary_window_s=2.0,
                                  canary_min_runs=2) as cp:
        assert rs.reasoning is not None
        registry = rs.reasoning.agents.registry
        await cp.eventually(lambda: cp.http.get("/api/v1/agents/cart", headers=cp.auth()),
                            lambda body: body.get("version") == 2)
        answer = await cp.http.post("/api/v1/agents/cart/canary", headers=cp.auth(),
                                    json={"candidate_version": 2, "share": 0.5})
        assert answer.status_code == 200, answer.text
        await eventually(lambda: _state(registry, "cart") is RolloutState.ACTIVE,
                         what="cart canary active", timeout_s=15)

        async def traffic() -> None:  # closed loop: no backlog builds up behind the rollback
            while True:
                batch = {await rs.ask("cart", "hello") for _ in range(6)}
                await rs.completed.wait(lambda m, ids=batch: m.run_id in ids, count=6,
                                        timeout=60)

        feeder = asyncio.create_task(traffic())
        try:
            await eventually(lambda: _state(registry, "cart") is RolloutState.ROLLED_BACK,
                             what="cart canary rolled back", timeout_s=150)
        finally:
            feeder.cancel()
        reason = registry.get("cart").rollout.reason or ""  # type: ignore[union-attr]
        assert "failed for 2 consecutive windows" in reason
        assert "failure rate 100% vs stable 0%" in reason
        audits = await rs.audit.wait(lambda e: isinstance(e, AuditEvent)
                                     and e.action == "agent.canary.rolled_back")
        assert audits[0].actor.id == "control-plane" and audits[0].details["automatic"] is True
        assert audits[0].target.id == "cart"
        figures = audits[0].details["candidate"]
        assert figures["failed"] == figures["runs"] >= 2
        assert await cp.wait_audit(1, lambda r: r["action"] == "agent.canary.started")

        # Every new session is on the stable version now, candidate buckets included.
        again = {await rs.ask("cart", "hello", session=f"cart-{i}"): i for i in range(20)}
        after = await rs.completed.wait(lambda m: m.run_id in again, count=20, timeout=60)
        assert {m.agent_id for m in after} == {"cart@1"}

        body = (await cp.http.get("/api/v1/agents/cart/canary", headers=cp.auth())).json()
        assert body["rollout"]["state"] == "rolled_back"
        verdicts = [w["verdict"] for w in body["windows"]]
        assert verdicts.count("fail") == 2 and verdicts[0] == "fail"
        assert await asyncio.to_thread(main, ["canary", "status", "cart"]) == 0
        shown = capsys.readouterr().out
        assert "cart: canary rolled_back" in shown and "fail" in shown

        # The CLI republishes the same version; the control plane's view follows it.
        assert await asyncio.to_thread(main, ["canary", "promote", "cart"]) == 1  # none active
        assert await asyncio.to_thread(main, ["canary", "start", "cart", "--candidate", "2",
                                              "--share", "0.1"]) == 0
        await cp.eventually(lambda: cp.http.get("/api/v1/agents/cart/canary", headers=cp.auth()),
                            lambda body: (body.get("rollout") or {}).get("state") == "active")
        assert await asyncio.to_thread(main, ["canary", "rollback", "cart", "--reason",
                                              "enough"]) == 0
        await cp.eventually(lambda: cp.http.get("/api/v1/agents/cart/canary", headers=cp.auth()),
                            lambda body: (body.get("rollout") or {}).get("reason") == "enough")
