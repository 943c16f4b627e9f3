"""The management API on real Kafka and FerretDB: every change is published and audited once,
scopes are enforced (refusals audited), paused agents and the kill switch refuse runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from schemas.agents import AgentDefinition
from schemas.codec import decode
from schemas.envelope import Envelope
from schemas.runs import RunCommand, RunCompleted, RunEvent, RunEventKind, RunRequested, RunStatus
from schemas.topics import AGENTS, RUNS_COMMANDS, RUNS_COMPLETED, RUNS_EVENTS, RUNS_REQUESTED
from services.control_plane.audit_chain import verify
from shared.audit import digest
from shared.settings import KafkaSettings, MongoSettings
from tests.support.control_plane import (
    Running,
    by_action,
    running_control_plane,
)
from tests.support.kafka import collect

pytestmark = pytest.mark.integration

AGENT = {"id": "helper", "instructions": "Be helpful.", "model": {"name": "scripted"}}


@pytest.fixture
async def cp(topics: KafkaSettings, mongo_settings: MongoSettings) -> Any:
    async with running_control_plane(topics, mongo_settings) as running:
        yield running


def problem(answer: httpx.Response, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = answer.json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


async def records_on(topics: KafkaSettings, spec: Any, n: int, message: Any) -> list[Any]:
    records = await collect(topics.bootstrap_servers, spec.physical(topics.topic_prefix), n)
    return [decode(message, r.value, Envelope.from_headers(r.headers)) for r in records]


async def test_every_mutation_is_published_and_audited_exactly_once(
    cp: Running, topics: KafkaSettings,
) -> None:
    admin = cp.auth()
    created = await cp.http.post("/api/v1/agents", json=AGENT, headers=admin)
    assert created.status_code == 201, created.text
    assert created.json()["version"] == 1
    updated = await cp.http.put("/api/v1/agents/helper", headers=admin,
                                json=AGENT | {"instructions": "Be brief."})
    assert updated.json()["version"] == 2
    assert (await cp.http.post("/api/v1/agents/helper/pause", headers=admin)).json()["paused"]
    resumed = await cp.http.post("/api/v1/agents/helper/resume", headers=admin)
    assert resumed.json() | {"definition": None} == resumed.json() | {
        "version": 4, "paused": False, "definition": None}
    submitted = await cp.http.post("/api/v1/runs", headers=admin, json={
        "agent_id": "helper", "input": "hi", "user_id": "u1", "session_id": "s1", "run_id": "r1"})
    assert submitted.status_code == 202, submitted.text
    cancel = await cp.http.post("/api/v1/runs/r1/cancel", headers=admin, json={"reason": "test"})
    assert cancel.status_code == 202, cancel.text
    token_id, _ = await cp.token("viewer")
    assert (await cp.http.delete(f"/api/v1/tokens/{token_id}", headers=admin)).json()[
        "revoked_at"]
    on = await cp.http.put("/api/v1/kill-switch", headers=admin, json={"enabled": True})
    assert on.json()["enabled"] is True
    await cp.http.put("/api/v1/kill-switch", headers=admin, json={"enabled": False})
    assert (await cp.http.post("/api/v1/knowledge/documents", headers=admin, json={
        "document_id": "d1", "source": "test", "text": "Paris is in France."})).status_code == 202

    expected = ["agent.create", "agent.update", "agent.pause", "agent.resume", "run.submit",
                "run.cancel", "token.create", "token.revoke", "kill_switch.enable",
                "kill_switch.disable", "knowledge.upload"]
    records = await cp.wait_audit(len(expected), lambda r: True)
    by_name = {}
    for record in records:
        assert record["action"] not in by_name, f"{record['action']} audited twice"
        by_name[record["action"]] = record
    assert sorted(by_name) == sorted(expected)
    for record in records:
        event = record["event"]
        assert event["actor"] == {"kind": "token", "id": "bootstrap"}
        assert event["outcome"] == "success"
        assert "test-bootstrap-token" not in str(record)
    update = by_name["agent.update"]["event"]
    definitions = await records_on(topics, AGENTS, 4, AgentDefinition)
    assert [d.version for d in definitions] == [1, 2, 3, 4]
    assert update["before_digest"] == digest(definitions[0].model_dump(mode="json"))
    assert update["after_digest"] == digest(definitions[1].model_dump(mode="json"))
    assert [d.paused for d in definitions] == [False, False, True, False]
    (request,) = await records_on(topics, RUNS_REQUESTED, 1, RunRequested)
    assert (request.run_id, request.session_id, request.agent_id) == ("r1", "s1", "helper")
    (command,) = await records_on(topics, RUNS_COMMANDS, 1, RunCommand)
    assert (command.run_id, command.command.value, command.actor.id) == ("r1", "cancel",
                                                                          "bootstrap")
    assert (await verify(cp.db)).ok


async def test_tokens_and_scopes(cp: Running) -> None:
    problem(await cp.http.get("/api/v1/runs"), 401)
    problem(await cp.http.get("/api/v1/runs", headers=cp.auth("ms_nope")), 401)
    await cp.http.post("/api/v1/agents", json=AGENT, headers=cp.auth())
    await cp.http.post("/api/v1/runs", headers=cp.auth(), json={
        "agent_id": "helper", "input": "hi", "user_id": "u1", "run_id": "r2"})
    viewer_id, viewer = await cp.token("viewer", "watcher")
    assert (await cp.http.get("/api/v1/whoami", headers=cp.auth(viewer))).json() == {
        "token_id": viewer_id, "name": "watcher", "scope": "viewer"}
    assert (await cp.http.get("/api/v1/runs", headers=cp.auth(viewer))).status_code == 200

    refused = problem(await cp.http.post("/api/v1/runs/r2/cancel", headers=cp.auth(viewer)), 403)
    assert "viewer" in refused["detail"]
    (record,) = await cp.wait_audit(1, by_action("run.cancel"))
    assert record["event"]["outcome"] == "refused"
    assert record["event"]["actor"] == {"kind": "token", "id": viewer_id}
    assert record["target_id"] == "r2"
    assert "below operator" in record["event"]["reason"]
    problem(await cp.http.get("/api/v1/tokens", headers=cp.auth(viewer)), 403)

    listed = (await cp.http.get("/api/v1/tokens", headers=cp.auth())).json()["items"]
    assert viewer_id in {t["id"] for t in listed}
    assert "token" not in listed[0] and "hash" not in listed[0]
    await cp.http.delete(f"/api/v1/tokens/{viewer_id}", headers=cp.auth())
    problem(await cp.http.get("/api/v1/runs", headers=cp.auth(viewer)), 401)


async def test_paused_agent_and_kill_switch_refuse_runs_with_a_reason(cp: Running) -> None:
    admin = cp.auth()
    await cp.http.post("/api/v1/agents", json=AGENT, headers=admin)
    await cp.http.post("/api/v1/agents/helper/pause", headers=admin)
    run = {"agent_id": "helper", "input": "hi", "user_id": "u1", "run_id": "r-paused"}
    body = problem(await cp.http.post("/api/v1/runs", headers=admin, json=run), 409)
    assert "paused" in body["detail"]
    (record,) = await cp.wait_audit(1, by_action("run.submit"))
    assert record["event"]["outcome"] == "refused"
    assert "paused" in record["event"]["reason"]

    await cp.http.post("/api/v1/agents/helper/resume", headers=admin)
    await cp.http.put("/api/v1/kill-switch", headers=admin,
                      json={"enabled": True, "reason": "incident 42"})
    run["run_id"] = "r-killed"
    body = problem(await cp.http.post("/api/v1/runs", headers=admin, json=run), 409)
    assert "kill switch" in body["detail"] and "incident 42" in body["detail"]
    await cp.wait_audit(1, by_action("run.submit", target_id="r-killed"))
    await cp.http.put("/api/v1/kill-switch", headers=admin, json={"enabled": False})
    run["run_id"] = "r-ok"
    assert (await cp.http.post("/api/v1/runs", headers=admin, json=run)).status_code == 202
    problem(await cp.http.post("/api/v1/runs", headers=admin, json=run | {
        "agent_id": "ghost"}), 404)


async def test_runs_view_follows_run_events_and_completions(
    cp: Running, topics: KafkaSettings,
) -> None:
    admin, publisher = cp.auth(), cp.plane.runtime.publisher
    await cp.http.post("/api/v1/agents", json=AGENT, headers=admin)
    await cp.http.post("/api/v1/runs", headers=admin, json={
        "agent_id": "helper", "input": "2+2?", "user_id": "u1", "session_id": "s9",
        "run_id": "r9"})
    t0 = datetime.now(UTC)

    def event(seq: int, kind: RunEventKind, ms: int, **extra: Any) -> RunEvent:
        return RunEvent(run_id="r9", session_id="s9", agent_id="helper@1", seq=seq, kind=kind,
                        at=t0 + timedelta(milliseconds=ms), **extra)

    for e in (event(0, RunEventKind.RUN_STARTED, 0),
              event(1, RunEventKind.TOOL_REQUESTED, 100, tool="calculator", call_id="c1"),
              event(2, RunEventKind.TOOL_COMPLETED, 150, tool="calculator", call_id="c1"),
              event(3, RunEventKind.MODEL_COMPLETED, 400),
              event(4, RunEventKind.RUN_COMPLETED, 410)):
        await publisher.publish(RUNS_EVENTS, e, message_id=f"r9-{e.seq}")
    await publisher.publish(RUNS_COMPLETED, RunCompleted(
        run_id="r9", session_id="s9", agent_id="helper@1", user_id="u1",
        status=RunStatus.COMPLETED, output="4", completed_at=t0 + timedelta(milliseconds=410)))

    run = await cp.eventually(
        lambda: cp.http.get("/api/v1/runs/r9", headers=admin),
        lambda run: run["status"] == "completed" and run.get("output") and len(run["events"]) == 5)
    assert run["input"] == "2+2?" and run["output"] == "4"
    assert [(s["type"], s["duration_ms"]) for s in run["timeline"]] == [("tool", 50), ("model", 250)]
    listed = (await cp.http.get("/api/v1/runs?status=completed&session_id=s9",
                                headers=admin)).json()
    assert [r["id"] for r in listed["items"]] == ["r9"]
    problem(await cp.http.post("/api/v1/runs/r9/cancel", headers=admin), 409)
    sessions = (await cp.http.get("/api/v1/sessions", headers=admin)).json()["items"]
    assert sessions[0]["id"] == "s9" and sessions[0]["runs"] == 1
    messages = (await cp.http.get("/api/v1/sessions/s9/messages", headers=admin)).json()
    assert [(m["role"], m["content"]) for m in messages["items"]] == [("user", "2+2?"),
                                                                      ("assistant", "4")]


async def test_pagination_validation_and_problem_details(cp: Running) -> None:
    admin = cp.auth()
    for i in range(5):
        await cp.http.post("/api/v1/agents", json=AGENT | {"id": f"a{i}"}, headers=admin)
    seen, cursor = [], None
    while True:
        page = (await cp.http.get("/api/v1/agents", headers=admin,
                                  params={"limit": 2, **({"cursor": cursor} if cursor else {})}
                                  )).json()
        seen += [a["id"] for a in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == [f"a{i}" for i in range(5)] and len(seen) == 5
    problem(await cp.http.get("/api/v1/agents?limit=201", headers=admin), 422)
    problem(await cp.http.get("/api/v1/agents?cursor=garbage", headers=admin), 400)
    bad = problem(await cp.http.post("/api/v1/agents", headers=admin, json={"id": "x"}), 422)
    assert bad["errors"] and "instructions" in str(bad["errors"])
    problem(await cp.http.post("/api/v1/agents", json=AGENT | {"id": "a0"}, headers=admin), 409)
    problem(await cp.http.get("/api/v1/nowhere", headers=admin), 404)
    problem(await cp.http.get("/api/v1/memories", headers=admin), 422)
    audit = (await cp.http.get("/api/v1/audit?action=agent.create&limit=3",
                               headers=admin)).json()
    assert len(audit["items"]) <= 3
    verified = (await cp.http.get("/api/v1/audit/verify", headers=admin)).json()
    assert verified["ok"] is True


async def test_api_is_served_over_tcp_by_uvicorn(cp: Running) -> None:
    port = cp.plane.server.port
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        answer = await client.get("/api/v1/whoami", headers=cp.auth())
        assert answer.json()["scope"] == "admin"
        page = await client.get("/")
        assert page.status_code == 200 and "<html" in page.text.lower()


async def test_memories_are_listed_and_deleted_through_the_memory_store(cp: Running) -> None:
    from services.memory.learning import Memory
    from services.memory.store import MemoryStore

    now = datetime.now(UTC)
    store = MemoryStore(cp.db)
    for i in range(3):
        await store.add_memory(Memory(id=f"m{i}", user_id="u7", topic="prefs",
                                      text=f"likes tea {i}", created_at=now, updated_at=now))
    admin = cp.auth()
    first = (await cp.http.get("/api/v1/memories", headers=admin,
                               params={"user_id": "u7", "limit": 2})).json()
    rest = (await cp.http.get("/api/v1/memories", headers=admin, params={
        "user_id": "u7", "limit": 2, "cursor": first["next_cursor"]})).json()
    assert sorted(m["id"] for m in first["items"] + rest["items"]) == ["m0", "m1", "m2"]
    assert rest["next_cursor"] is None
    deleted = await cp.http.delete("/api/v1/memories/m1", headers=admin, params={"user_id": "u7"})
    assert deleted.json()["text"] == "likes tea 1"
    problem(await cp.http.delete("/api/v1/memories/m1", headers=admin,
                                 params={"user_id": "u7"}), 404)
    records = await cp.wait_audit(2, by_action("memory.delete"))
    assert [r["outcome"] for r in records] == ["success", "refused"]
    assert records[0]["event"]["before_digest"]
    assert sorted(m.id for m in await store.memories_of("u7")) == ["m0", "m2"]
