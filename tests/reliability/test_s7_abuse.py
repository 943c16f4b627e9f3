"""Scenario 7: abuse of the control plane and of the tool path.

* The management API with a missing, malformed, unknown, revoked and
  under-scoped token: 401 or 403, nothing changes, and every refused
  mutation is in the audit log with its reason.
* Tool calls published straight onto ``tools.calls`` (bypassing reasoning):
  a tool outside the agent's allowlist, an unknown agent, an approval-gated
  tool without approval, and ``http_fetch`` aimed at cloud metadata
  (169.254.169.254), loopback and a host off the allowlist. Each is answered
  with an error and none has an effect: the side-effect counter stays still
  and a canary HTTP server on loopback sees no request.
"""

from __future__ import annotations

import http.server
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from schemas.codec import encode
from schemas.envelope import Envelope
from schemas.tools import ToolCall
from schemas.topics import TOOLS_CALLS, TOOLS_RESULTS
from tests.reliability.harness import Harness, ScenarioRun
from tests.reliability.kafka_io import read_topic
from tests.reliability.side_effect_tools import read_effects

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(600)]


class Canary:
    """A loopback HTTP server that counts every request that reaches it."""

    def __init__(self) -> None:
        self.hits = 0
        canary = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                canary.hits += 1
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"secret")

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


async def _api_abuse(run: ScenarioRun, api: str, admin: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=f"{api}/api/v1", timeout=20) as http:
        async def status(method: str, path: str, token: str | None, **kw: Any) -> int:
            headers = {} if token is None else {
                "Authorization": token if token.startswith("Basic ") else f"Bearer {token}"}
            return (await http.request(method, path, headers=headers, **kw)).status_code

        async def token(scope: str) -> tuple[str, str]:
            answer = await http.post("/tokens", json={"name": f"rel-{scope}", "scope": scope},
                                     headers={"Authorization": f"Bearer {admin}"})
            answer.raise_for_status()
            return answer.json()["id"], answer.json()["token"]

        viewer_id, viewer = await token("viewer")
        operator_id, operator = await token("operator")
        submit = {"agent_id": "plain", "input": "echo via api", "user_id": "u-s7"}
        checks = {
            "no token": (await status("GET", "/runs", None), 401),
            "not a bearer token": (await status("GET", "/runs", "Basic YWRtaW46YWRtaW4="), 401),
            "malformed token": (await status("GET", "/runs", "letmein"), 401),
            "unknown token": (await status("GET", "/runs", f"ms_{'0' * 16}_{'A' * 43}"), 401),
            "forged secret of a real id": (
                await status("GET", "/runs", f"ms_{viewer_id}_{'B' * 43}"), 401),
            "viewer reads": (await status("GET", "/runs", viewer), 200),
            "viewer submits a run": (await status("POST", "/runs", viewer, json=submit), 403),
            "viewer creates a token": (await status("POST", "/tokens", viewer,
                                                    json={"name": "x", "scope": "admin"}), 403),
            "operator creates a token": (await status("POST", "/tokens", operator,
                                                      json={"name": "x", "scope": "admin"}), 403),
            "operator flips the kill switch": (await status(
                "PUT", "/kill-switch", operator, json={"enabled": True}), 403),
        }
        await status("DELETE", f"/tokens/{operator_id}", admin)
        checks["revoked token reads"] = (await status("GET", "/runs", operator), 401)
        checks["revoked token submits"] = (await status("POST", "/runs", operator, json=submit), 401)
        for name, (got, want) in checks.items():
            run.expect(got == want, f"API {name}: answered {got}, expected {want}")
        return {"viewer": viewer_id, "operator": operator_id, "checks": len(checks)}


def _call(agent: str, tool: str, arguments: dict[str, Any]) -> ToolCall:
    return ToolCall(call_id=f"call-s7-{uuid.uuid4().hex[:12]}", run_id=f"run-s7-{uuid.uuid4().hex[:8]}",
                    session_id="s7-direct", agent_id=agent, tool=tool, arguments=arguments,
                    deadline=datetime.now(UTC) + timedelta(seconds=60))


async def test_abuse_is_refused_and_audited(harness: Harness) -> None:
    run = await harness.begin("7-abuse")
    stack, checker = harness.stack, harness.checker
    canary = Canary()
    try:
        tokens = await _api_abuse(run, stack.api_url, stack.token)
        calls = {
            "tool off the allowlist": _call("plain", "bump", {"key": "s7-off-allowlist"}),
            "unknown agent": _call("nobody", "bump", {"key": "s7-unknown-agent"}),
            "approval skipped": _call("gated", "bump", {"key": "s7-no-approval"}),
            "cloud metadata": _call("fetcher", "http_fetch",
                                    {"url": "http://169.254.169.254/latest/meta-data/"}),
            "loopback": _call("fetcher", "http_fetch",
                              {"url": f"http://127.0.0.1:{canary.port}/secret"}),
            "localhost": _call("fetcher", "http_fetch",
                               {"url": f"http://localhost:{canary.port}/secret"}),
            "host off the allowlist": _call("fetcher", "http_fetch",
                                            {"url": "http://evil.example.com/"}),
        }
        producer = AIOKafkaProducer(bootstrap_servers=checker.bootstrap, acks="all")
        await producer.start()
        try:
            for call in calls.values():
                await producer.send_and_wait(
                    checker.topic(TOOLS_CALLS.name), encode(call), key=TOOLS_CALLS.key_of(call),
                    headers=Envelope.new(call, source="tests/reliability/abuse").to_headers())
        finally:
            await producer.stop()
        # The model is talked into the same by a user: reasoning passes it, tools refuses.
        await run.driver.sequential("s7-fetch", "fetcher",
                                    ["fetch http://169.254.169.254/latest/meta-data/"])
        await checker.wait_idle()
        answers = {r.body().get("call_id"): r.body()
                   for r in await read_topic(checker.bootstrap, checker.topic(TOOLS_RESULTS.name))}
        for name, call in calls.items():
            answer = answers.get(call.call_id)
            run.expect(answer is not None, f"{name}: no answer on tools.results")
            if answer is not None:
                run.expect(answer.get("ok") is False and answer.get("error", {}).get("message"),
                           f"{name}: not refused with a reason: {answer}")
        effects = read_effects(stack.effects_path)
        run.expect(not any(k.startswith("s7-") for k in effects), "a refused bump ran")
        run.expect(canary.hits == 0, f"http_fetch reached loopback {canary.hits} time(s)")
        await run._audit_settled()
        refused = [d async for d in checker.db.audit_log.find(
            {"outcome": "refused", "actor_id": {"$in": [tokens["viewer"], tokens["operator"]]}})]
        run.expect(len(refused) >= 4, f"refused API mutations audited: {len(refused)} of 4")
        run.expect(all(r["event"].get("reason") for r in refused), "a refusal without reason")
        refused_calls = await checker.db.audit_log.count_documents(
            {"action": "tool.refused", "target_id": {"$in": [c.call_id for c in calls.values()]}})
        run.figures.update({"api_checks": tokens["checks"], "direct_tool_calls": len(calls),
                            "tool_refusals_audited": refused_calls,
                            "api_refusals_audited": len(refused), "canary_hits": canary.hits})
    finally:
        canary.close()
    await run.finish()
