"""The call handler: at most one execution per call_id, an answer for every delivery."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from typing import Any, cast

import pytest

from schemas.common import Actor, ActorKind
from schemas.envelope import Envelope, deterministic_id
from schemas.tools import ToolCall, ToolErrorCode
from services.tools.executor import Executor
from services.tools.handlers import CallHandler, result_message_id
from services.tools.metrics import ToolMetrics
from services.tools.registry import ToolRegistry
from services.tools.store import ToolCallStore
from shared.agent_registry import AgentRegistry
from shared.audit import AuditEmitter, digest
from shared.kafka.consumer import Delivery
from shared.kafka.publisher import Publisher
from shared.observability.metrics import ServiceMetrics
from tests.unit.tools.tools_service_fakes import FakeStore, RecordingBroker, agent, tool_call

pytestmark = pytest.mark.unit


class Service:
    """A handler over fakes, with tools that count how often they really ran."""

    def __init__(self, *, inline_limit: int = 64 * 1024, max_result_bytes: int = 1 << 20) -> None:
        self.runs: dict[str, int] = {}
        self.registry = ToolRegistry()
        self.gate: asyncio.Event | None = None
        reg = self.registry

        @reg.tool
        async def echo(text: str) -> str:
            """Echo the text."""
            self.runs["echo"] = self.runs.get("echo", 0) + 1
            if self.gate is not None:
                await self.gate.wait()
            return text

        @reg.tool(side_effecting=True)
        def send_mail(to: str) -> str:
            """Send a mail (not safe to repeat)."""
            self.runs["send_mail"] = self.runs.get("send_mail", 0) + 1
            return f"sent to {to}"

        @reg.tool
        def big(size: int) -> str:
            """Return a long text."""
            return "x" * size

        @reg.tool(timeout_s=0.05)
        async def slow() -> str:
            """Never finishes in time."""
            await asyncio.Event().wait()
            return "never"

        self.broker = RecordingBroker()
        publisher = Publisher(cast(Any, self.broker), source="mindstream/tools", topic_prefix="t.")
        self.agents = AgentRegistry()
        self.store = FakeStore()
        self.metrics = ServiceMetrics("tools")
        self.handler = CallHandler(
            registry=reg, executor=Executor(reg), agents=self.agents,
            store=cast(ToolCallStore, self.store), publisher=publisher,
            audit=AuditEmitter(publisher, "tools"), metrics=ToolMetrics(self.metrics, reg),
            inline_limit=inline_limit, max_result_bytes=max_result_bytes,
        )  # fmt: skip

    def allow(self, tools: Iterable[str], **extra: Any) -> None:
        self.agents.apply(agent(list(tools), **extra))

    async def deliver(self, call: ToolCall, message_id: str | None = None) -> None:
        envelope = Envelope.new(call, source="mindstream/reasoning", message_id=message_id)
        await self.handler.handle(Delivery(call, envelope, "t.mindstream.tools.calls.v1", 0, 0))

    def metric(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(name, {"service": "tools", **labels})
        return value or 0.0


async def test_a_call_runs_once_and_its_result_is_published_with_a_deterministic_id() -> None:
    svc = Service()
    svc.allow(["echo"])
    call = tool_call("echo", {"text": "secret-token-123"})
    await svc.deliver(call)
    [(envelope, result)] = svc.broker.results()
    assert envelope.id == result_message_id("call-1") == deterministic_id("tool-result", "call-1")
    assert (result.ok, result.content, result.tool) == (True, "secret-token-123", "echo")
    [audit] = svc.broker.audits()
    assert (audit.action, audit.outcome, audit.target.id) == ("tool.executed", "success", "call-1")
    assert audit.details["args_sha256"] == digest({"text": "secret-token-123"})
    assert "secret-token-123" not in json.dumps(audit.model_dump(mode="json"))
    assert svc.store.results["call-1"]["outcome"] == "ok"
    assert "arguments" not in svc.store.calls["call-1"]
    assert svc.metric("mindstream_tool_calls_total", tool="echo", outcome="ok") == 1


async def test_redeliveries_republish_the_stored_result_without_running_again() -> None:
    svc = Service()
    svc.allow(["echo"])
    call = tool_call("echo", {"text": "hi"})
    await svc.deliver(call, message_id="m-1")
    await svc.deliver(call, message_id="m-1")
    await svc.deliver(call, message_id="m-2")  # same call_id, another message
    assert svc.runs == {"echo": 1}
    results = svc.broker.results()
    assert {e.id for e, _ in results} == {result_message_id("call-1")}
    assert len({r.model_dump_json() for _, r in results}) == 1
    assert svc.metric("mindstream_tool_call_replays_total", tool="echo") == 2


async def test_concurrent_duplicates_in_one_process_run_the_tool_once() -> None:
    svc = Service()
    svc.allow(["echo"])
    svc.gate = asyncio.Event()
    call = tool_call("echo", {"text": "hi"})
    first = asyncio.create_task(svc.deliver(call, "m-1"))
    second = asyncio.create_task(svc.deliver(call, "m-2"))
    await asyncio.sleep(0)
    svc.gate.set()
    await asyncio.gather(first, second)
    assert svc.runs == {"echo": 1}
    assert len(svc.broker.results()) == 2


async def test_an_interrupted_side_effecting_call_is_answered_not_repeated() -> None:
    svc = Service()
    svc.allow(["send_mail"])
    call = tool_call("send_mail", {"to": "a@example.com"})
    await svc.store.start("call-1", owner="crashed-replica", now=call.deadline, tool="send_mail")
    await svc.deliver(call)
    assert svc.runs == {}
    [(_, result)] = svc.broker.results()
    assert result.error is not None
    assert result.error.code is ToolErrorCode.FAILED
    assert "interrupted: the tool may or may not have run" in result.error.message
    assert svc.store.results["call-1"]["outcome"] == "interrupted"


async def test_an_interrupted_idempotent_call_is_run_again() -> None:
    svc = Service()
    svc.allow(["echo"])
    call = tool_call("echo", {"text": "again"})
    await svc.store.start("call-1", owner="crashed-replica", now=call.deadline, tool="echo")
    await svc.deliver(call)
    assert svc.runs == {"echo": 1}
    [(_, result)] = svc.broker.results()
    assert result.content == "again"
    assert svc.store.results["call-1"]["attempts"] == 2


async def test_a_database_error_after_running_does_not_run_the_tool_again() -> None:
    svc = Service()
    svc.allow(["send_mail"])
    svc.store.fail_next_finish = 1
    call = tool_call("send_mail", {"to": "a@example.com"})
    with pytest.raises(ConnectionError):
        await svc.deliver(call)
    await svc.deliver(call)  # the pipeline's retry
    assert svc.runs == {"send_mail": 1}
    [(_, result)] = svc.broker.results()
    assert result.content == "sent to a@example.com"


@pytest.mark.parametrize(
    ("agents", "call", "code"),
    [
        ([], tool_call("echo", {"text": "x"}), ToolErrorCode.NOT_ALLOWED),
        (["big"], tool_call("echo", {"text": "x"}), ToolErrorCode.NOT_ALLOWED),
        (["echo"], tool_call("nope"), ToolErrorCode.UNKNOWN_TOOL),
    ],
    ids=["unknown-agent", "outside-allowlist", "unknown-tool"],
)
async def test_calls_outside_policy_are_refused_and_audited(
    agents: list[str], call: ToolCall, code: ToolErrorCode
) -> None:
    svc = Service()
    if agents:
        svc.allow(agents)
    await svc.deliver(call)
    assert svc.runs == {}
    [(_, result)] = svc.broker.results()
    assert result.error is not None
    assert result.error.code is code
    [audit] = svc.broker.audits()
    assert (audit.action, audit.outcome) == ("tool.refused", "refused")


async def test_a_tool_the_agent_must_have_approved_runs_only_with_the_approval() -> None:
    svc = Service()
    svc.allow(["send_mail"], require_approval=["send_mail"])
    await svc.deliver(tool_call("send_mail", {"to": "a@b.c"}, call_id="c-1"))
    approved = tool_call("send_mail", {"to": "a@b.c"}, call_id="c-2",
                         approved_by=Actor(kind=ActorKind.USER, id="operator-1"))  # fmt: skip
    await svc.deliver(approved)
    (_, refused), (_, ran) = svc.broker.results()
    assert refused.error is not None
    assert refused.error.code is ToolErrorCode.REJECTED
    assert ran.ok
    assert svc.runs == {"send_mail": 1}
    assert svc.broker.audits()[1].details["approved_by"] == "operator-1"


async def test_invalid_arguments_and_timeouts_are_answers() -> None:
    svc = Service()
    svc.allow(["echo", "slow"])
    await svc.deliver(tool_call("echo", {"txt": "typo"}, call_id="c-1"))
    await svc.deliver(tool_call("slow", call_id="c-2"))
    (_, invalid), (_, late) = svc.broker.results()
    assert invalid.error is not None
    assert invalid.error.code is ToolErrorCode.INVALID_ARGUMENTS
    assert "text" in invalid.error.message
    assert late.error is not None
    assert late.error.code is ToolErrorCode.TIMEOUT


async def test_large_results_go_by_reference_and_huge_ones_are_refused() -> None:
    svc = Service(inline_limit=1024, max_result_bytes=4096)
    svc.allow(["big"])
    await svc.deliver(tool_call("big", {"size": 100}, call_id="c-small"))
    await svc.deliver(tool_call("big", {"size": 2000}, call_id="c-large"))
    await svc.deliver(tool_call("big", {"size": 5000}, call_id="c-huge"))
    (_, small), (_, large), (_, huge) = svc.broker.results()
    assert small.content == "x" * 100
    assert large.content is None
    assert large.content_ref is not None
    payload = await svc.store.get_payload(large.content_ref.ref_id)
    assert payload is not None
    assert json.loads(payload.data) == "x" * 2000
    assert payload.sha256 == large.content_ref.sha256
    assert huge.error is not None
    assert "above the limit" in huge.error.message
