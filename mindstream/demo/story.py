"""The demo's story, told through the public interfaces only.

Everything here is what a user could do: publish run requests with the
Python client, watch the run events, approve a tool call with a run
command, and ask the control plane's API whether the audit trail is intact.
Each step prints what happened and returns whether it showed what it should,
so ``mindstream demo --once`` can exit non-zero when the story breaks.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from dataclasses import dataclass

import httpx

from mindstream.cli.render import BOLD, DIM, GREEN, RED, RESET, EventPrinter
from mindstream.client import MindstreamClient
from schemas.runs import RunCommandKind, RunCompleted, RunEvent, RunEventKind


@dataclass
class StepResult:
    title: str
    ok: bool
    detail: str


class Story:
    def __init__(self, client: MindstreamClient, *, api_url: str, token: str, notes_url: str,
                 user: str | None = None) -> None:
        self.client = client
        self.api_url = api_url
        self.token = token
        self.notes_url = notes_url
        self.user = user or f"ada-{uuid.uuid4().hex[:6]}"
        self.out = sys.stdout
        self.color = self.out.isatty()
        self.results: list[StepResult] = []

    def _c(self, code: str, text: str) -> str:
        return f"{code}{text}{RESET}" if self.color else text

    def heading(self, text: str) -> None:
        print("\n" + self._c(BOLD, text), flush=True)

    async def _watch(self, agent: str, text: str, session: str,
                     approve: bool = False) -> tuple[RunCompleted, list[RunEvent]]:
        printer = EventPrinter(self.out, color=self.color)
        print(self._c(DIM, f"  {self.user} › {text}"), flush=True)
        events: list[RunEvent] = []
        started = time.perf_counter()
        async for item in self.client.stream(agent, text, session=session, user=self.user,
                                             timeout=120):
            if isinstance(item, RunCompleted):
                printer.final(item, time.perf_counter() - started)
                return item, events
            events.append(item)
            printer.event(item)
            if approve and item.kind is RunEventKind.RUN_AWAITING_APPROVAL and item.call_id:
                print(self._c(DIM, f"  operator approves {item.tool} (run command 'approve')"),
                      flush=True)
                await self.client.command(item.run_id, session, RunCommandKind.APPROVE,
                                          call_id=item.call_id, actor="demo-operator",
                                          reason="looks safe")
        raise RuntimeError("the run ended without a result")

    def record(self, title: str, ok: bool, detail: str) -> None:
        self.results.append(StepResult(title, ok, detail))
        mark = self._c(GREEN, "✓") if ok else self._c(RED, "✗")
        print(f"  {mark} {detail}", flush=True)

    async def team_run(self) -> None:
        self.heading("1. A team at work: a leader delegates research (knowledge search) "
                     "and does arithmetic (a tool)")
        result, events = await self._watch(
            "team", "Plan a dinner for 6: how much pasta should I buy, and which wine goes "
            "with mushroom risotto?", session=f"dinner-{uuid.uuid4().hex[:6]}")
        kinds = {(e.kind, e.tool) for e in events}
        delegated = any(e.kind is RunEventKind.RUN_CHILD_STARTED for e in events) or \
            (RunEventKind.TOOL_REQUESTED, "delegate") in kinds
        calculated = (RunEventKind.TOOL_COMPLETED, "calculator") in kinds
        ok = result.status.value == "completed" and delegated and calculated
        self.record("team", ok, f"answer: {result.output or result.error}")

    async def learning(self) -> None:
        self.heading("2. Learning over time: a fact told in one session is used in the next")
        first, _ = await self._watch("assistant", "I'm vegetarian. What is 17 * 23?",
                                     session=f"monday-{uuid.uuid4().hex[:6]}")
        learned = await self._wait_for_memory("vegetarian")
        self.record("learn", first.status.value == "completed" and learned,
                    "memory learned: " + ("'vegetarian'" if learned else "nothing (yet)"))
        second, _ = await self._watch("assistant", "What should I cook tonight?",
                                      session=f"friday-{uuid.uuid4().hex[:6]}")
        used = "vegetarian" in (second.output or "").lower()
        self.record("recall", used, "the new session's answer "
                    + ("uses what was learned" if used else "did not use the memory"))

    async def _wait_for_memory(self, word: str, timeout_s: float = 30.0) -> bool:
        """Memory learns after the run completes; poll the control plane's memories API."""
        deadline = time.monotonic() + timeout_s
        async with self._api() as api:
            while time.monotonic() < deadline:
                response = await api.get("/api/v1/memories", params={"user_id": self.user})
                if response.status_code == 200:
                    items = response.json().get("items", [])
                    if any(word in str(item.get("text", "")).lower() for item in items):
                        return True
                await asyncio.sleep(0.5)
        return False

    async def approval(self) -> None:
        self.heading("3. A tool that needs an operator's approval")
        result, events = await self._watch(
            "fetcher", f"Summarise the release notes at {self.notes_url}",
            session=f"ops-{uuid.uuid4().hex[:6]}", approve=True)
        waited = any(e.kind is RunEventKind.RUN_AWAITING_APPROVAL for e in events)
        fetched = any(e.kind is RunEventKind.TOOL_COMPLETED and e.tool == "http_fetch"
                      for e in events)
        self.record("approval", result.status.value == "completed" and waited and fetched,
                    "waited for approval, then fetched and answered" if waited else
                    "did not pause for approval")

    async def workflow(self) -> None:
        self.heading("4. A durable workflow: research, then write, then review until approved")
        question = "Which wine goes with mushroom risotto?"
        print(self._c(DIM, f"  {self.user} › workflow research-write-review: {question}"), flush=True)
        final = None
        steps: list[str] = []
        async for event in self.client.follow_workflow("research-write-review", question,
                                                       user=self.user, timeout=180):
            if event.kind.value == "step.completed" and event.step_type is not None \
                    and event.step_type.value == "agent":
                steps.append(event.step or "?")
                text = (event.output or "").replace("\n", " ")[:90]
                print(f"  ✓ step {event.step}: {text}", flush=True)
            if event.terminal:
                final = event
        ok = final is not None and final.kind.value == "workflow.completed" and \
            any(s.startswith("drafting.2") for s in steps)
        self.record("workflow", ok, f"{final.kind.value if final else 'no result'} after "
                    f"{len(steps)} agent steps (the review asked for one revision)"
                    if ok else f"workflow ended: {final.reason if final else 'no result'}")

    async def audit(self) -> None:
        self.heading("5. The audit trail")
        async with self._api() as api:
            deadline = time.monotonic() + 20
            count = 0
            while time.monotonic() < deadline:
                page = (await api.get("/api/v1/audit", params={"limit": 200})).json()
                count = len(page.get("items", []))
                if count:
                    break
                await asyncio.sleep(0.5)
            report = (await api.get("/api/v1/audit/verify")).json()
        actions: dict[str, int] = {}
        for item in page.get("items", []):
            action = str(item.get("event", {}).get("action", "?"))
            actions[action] = actions.get(action, 0) + 1
        top = ", ".join(f"{a} ×{n}" for a, n in sorted(actions.items(), key=lambda x: -x[1])[:6])
        print(self._c(DIM, f"  newest records: {top}"), flush=True)
        self.record("audit", bool(report.get("ok")) and count > 0,
                    f"{report.get('checked', 0)} records hash-chained; chain "
                    + ("intact" if report.get("ok") else f"BROKEN at {report.get('first_broken')}"))

    def _api(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.api_url, timeout=10,
                                 headers={"Authorization": f"Bearer {self.token}"})

    async def tell(self) -> bool:
        for step in (self.team_run, self.learning, self.approval, self.workflow, self.audit):
            try:
                await step()
            except Exception as exc:  # a broken step is reported, and the story goes on
                self.record(step.__name__, False, f"failed: {type(exc).__name__}: {exc}")
        return all(r.ok for r in self.results)
