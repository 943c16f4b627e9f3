"""ModelClient against the scripted model server over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mindstream.testing.scripted_model import ScriptedModelServer
from services.reasoning.errors import (
    ModelCircuitOpenError,
    ModelProtocolError,
    ModelRequestError,
    ModelUnavailableError,
    StructuredOutputError,
)
from services.reasoning.model import ModelClient, ModelClientConfig, ModelRequest, is_transient
from shared.resilience import BreakerState, CircuitOpenError, RetryPolicy

pytestmark = pytest.mark.unit

SCRIPT = r"""
rules:
  - match: {tool_result: get_weather}
    text: "Weather: {{tool_result:get_weather}}"
  - match: {last_user: "weather in (\\w+)"}
    tool_calls:
      - {name: get_weather, arguments: {city: "{{match:1}}"}}
      - {name: get_time, arguments: {}}
  - match: {last_user: "break"}
    malformed_tool_call: true
    tool_calls: [{name: search, arguments: {q: "x"}}]
  - text: "Hello there, you said {{last_user}}"
"""


class FakeTime:
    """Monotonic and wall clocks that move only when the client sleeps."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.start = datetime(2030, 1, 1, tzinfo=UTC)
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.t

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.t - 1000.0)

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds


@pytest.fixture(scope="module")
async def shared_server() -> AsyncIterator[ScriptedModelServer]:
    async with ScriptedModelServer(SCRIPT) as srv:
        yield srv


@pytest.fixture
def server(shared_server: ScriptedModelServer) -> ScriptedModelServer:
    shared_server.set_script(SCRIPT)
    shared_server.requests.clear()
    return shared_server


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


def make_client(
    server: ScriptedModelServer, fake: FakeTime | None = None, **cfg: Any
) -> ModelClient:
    cfg.setdefault("retry", RetryPolicy(max_attempts=3, base_delay=0.0))
    config = ModelClientConfig(base_url=server.base_url, api_key="k", **cfg)
    if fake is None:
        return ModelClient(config)
    return ModelClient(config, clock=fake.monotonic, now=fake.now, sleep=fake.sleep)


def ask(text: str, **extra: Any) -> ModelRequest:
    return ModelRequest(model="m", messages=[{"role": "user", "content": text}], **extra)


async def test_streams_content_to_on_delta_and_returns_the_whole(
    server: ScriptedModelServer,
) -> None:
    deltas: list[str] = []

    async def on_delta(piece: str) -> None:
        deltas.append(piece)

    response = await make_client(server).complete(ask("good morning"), on_delta)
    assert response.content == "Hello there, you said good morning"
    assert len(deltas) > 1
    assert "".join(deltas) == response.content
    assert response.finish_reason == "stop"
    assert response.tool_calls == []
    assert response.usage.total_tokens > 0
    assert response.latency_ms >= 0
    assert response.time_to_first_token_ms is not None
    assert response.attempts == 1
    body = server.requests[0]["body"]
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


async def test_parallel_tool_calls_are_reassembled_with_parsed_arguments(
    server: ScriptedModelServer,
) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    response = await make_client(server).complete(ask("weather in Rome", tools=tools))
    assert response.finish_reason == "tool_calls"
    assert [(c.name, c.arguments) for c in response.tool_calls] == [
        ("get_weather", {"city": "Rome"}),
        ("get_time", {}),
    ]
    assert len({c.id for c in response.tool_calls}) == 2
    assert server.requests[0]["body"]["tools"] == tools


async def test_tool_result_follow_up(server: ScriptedModelServer) -> None:
    client = make_client(server)
    first = await client.complete(ask("weather in Rome"))
    call = first.tool_calls[0]
    messages = [
        {"role": "user", "content": "weather in Rome"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": '{"city": "Rome"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": "hot"},
    ]
    follow = await client.complete(ModelRequest(model="m", messages=messages))
    assert follow.content == "Weather: hot"


async def test_malformed_tool_arguments_raise_protocol_error_naming_the_tool(
    server: ScriptedModelServer,
) -> None:
    with pytest.raises(ModelProtocolError, match="tool call 'search'") as caught:
        await make_client(server).complete(ask("break it"))
    assert caught.value.tool == "search"
    assert len(server.requests) == 1  # a protocol error is not retried


async def test_server_errors_are_retried_until_success(
    server: ScriptedModelServer, fake: FakeTime
) -> None:
    server.set_script([{"status": 500, "times": 2, "text": "finally"}])
    response = await make_client(server, fake).complete(ask("x"))
    assert response.content == "finally"
    assert response.attempts == 3
    assert len(fake.slept) == 2


async def test_persistent_rate_limit_gives_up_with_a_clear_reason(
    server: ScriptedModelServer, fake: FakeTime
) -> None:
    server.set_script([{"status": 429}])
    with pytest.raises(ModelUnavailableError, match=r"after 3 attempt\(s\): 429") as caught:
        await make_client(server, fake).complete(ask("x"))
    assert caught.value.attempts == 3
    assert len(server.requests) == 3


async def test_bad_request_is_not_retried_and_does_not_trip_the_breaker(
    server: ScriptedModelServer,
) -> None:
    server.set_script([{"status": 400, "message": "context too long"}])
    client = make_client(server, breaker_failure_threshold=1)
    with pytest.raises(ModelRequestError, match="context too long") as caught:
        await client.complete(ask("x"))
    assert caught.value.status == 400
    assert len(server.requests) == 1
    assert client.breaker().state is BreakerState.CLOSED


async def test_breaker_opens_fails_fast_then_recovers(
    server: ScriptedModelServer, fake: FakeTime
) -> None:
    server.set_script([{"status": 503, "times": 2, "text": "back"}])
    client = make_client(
        server,
        fake,
        retry=RetryPolicy(max_attempts=1),
        breaker_failure_threshold=2,
        breaker_reset_s=30,
    )
    for _ in range(2):
        with pytest.raises(ModelUnavailableError):
            await client.complete(ask("x"))
    with pytest.raises(ModelCircuitOpenError, match="circuit breaker open") as caught:
        await client.complete(ask("x"))
    assert isinstance(caught.value, CircuitOpenError)
    assert len(server.requests) == 2  # the open breaker made no call

    fake.t += 31  # past reset: one trial call goes through and closes the breaker
    assert (await client.complete(ask("x"))).content == "back"
    assert client.breaker().state is BreakerState.CLOSED


async def test_per_attempt_timeout(server: ScriptedModelServer) -> None:
    server.set_script([{"delay_ms": 3000, "text": "too late"}])
    client = make_client(server, retry=RetryPolicy(max_attempts=1), call_timeout_s=0.1)
    with pytest.raises(ModelUnavailableError, match="timed out"):
        await client.complete(ask("x"))


async def test_past_deadline_makes_no_call(server: ScriptedModelServer, fake: FakeTime) -> None:
    client = make_client(server, fake)
    with pytest.raises(ModelUnavailableError, match="deadline reached"):
        await client.complete(ask("x", deadline=fake.now() - timedelta(seconds=1)))
    assert server.requests == []


async def test_deadline_bounds_the_retries(server: ScriptedModelServer, fake: FakeTime) -> None:
    server.set_script([{"status": 500}])
    client = make_client(
        server, fake, retry=RetryPolicy(max_attempts=10, base_delay=100, max_delay=100)
    )
    with pytest.raises(ModelUnavailableError):
        await client.complete(ask("x", deadline=fake.now() + timedelta(seconds=1)))
    assert sum(fake.slept) <= 1.0 + 1e-9
    assert len(server.requests) < 10


async def test_concurrency_is_limited_per_endpoint(server: ScriptedModelServer) -> None:
    client = make_client(server, max_concurrency=1)
    release = asyncio.Event()

    async def hold(_piece: str) -> None:
        await release.wait()

    first = asyncio.create_task(client.complete(ask("one"), hold))
    await server.wait_for_requests(1)
    second = asyncio.create_task(client.complete(ask("two")))
    with pytest.raises(TimeoutError):
        await server.wait_for_requests(2, within=0.3)
    release.set()
    assert (await first).content.endswith("one")
    assert (await second).content.endswith("two")
    assert len(server.requests) == 2


async def test_without_the_limit_both_calls_are_in_flight(server: ScriptedModelServer) -> None:
    """The control for the test above: with room for two, the second call is not held."""
    client = make_client(server, max_concurrency=2)
    release = asyncio.Event()

    async def hold(_piece: str) -> None:
        await release.wait()

    first = asyncio.create_task(client.complete(ask("one"), hold))
    await server.wait_for_requests(1)
    second = asyncio.create_task(client.complete(ask("two")))
    await server.wait_for_requests(2)
    release.set()
    await asyncio.gather(first, second)


SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string"}, "confidence": {"type": "number"}},
    "required": ["answer", "confidence"],
}


@pytest.mark.parametrize(
    "text",
    ['{"answer": "yes", "confidence": 0.9}', '```json\n{"answer": "yes", "confidence": 0.9}\n```'],
)
async def test_structured_output_is_parsed_and_validated(
    server: ScriptedModelServer, text: str
) -> None:
    server.set_script([{"text": text}])
    response = await make_client(server).complete(ask("x", response_schema=SCHEMA))
    assert response.parsed == {"answer": "yes", "confidence": 0.9}
    assert server.requests[0]["body"]["response_format"]["type"] == "json_schema"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"answer": "yes"}', "missing required property 'confidence'"),
        ('{"answer": 1, "confidence": 0.5}', r"\$.answer: expected string"),
        ("not json at all", "not JSON"),
    ],
)
async def test_structured_output_mismatch_is_an_error(
    server: ScriptedModelServer, text: str, problem: str
) -> None:
    server.set_script([{"text": text}])
    with pytest.raises(StructuredOutputError, match=problem):
        await make_client(server).complete(ask("x", response_schema=SCHEMA))


async def test_clients_and_breakers_are_cached_per_endpoint(server: ScriptedModelServer) -> None:
    client = make_client(server)
    assert client.breaker() is client.breaker(server.base_url)
    assert client.breaker("http://other.invalid/v1") is not client.breaker()
    await client.aclose()


def test_unreachable_endpoint_is_transient() -> None:
    assert is_transient(TimeoutError())
    assert not is_transient(ValueError())
    assert not is_transient(CircuitOpenError("x", 1.0))


async def test_connection_refused_is_unavailable(fake: FakeTime) -> None:
    config = ModelClientConfig(
        base_url="http://127.0.0.1:9/v1", retry=RetryPolicy(max_attempts=2, base_delay=0)
    )
    client = ModelClient(config, clock=fake.monotonic, now=fake.now, sleep=fake.sleep)
    with pytest.raises(ModelUnavailableError, match=r"after 2 attempt\(s\)"):
        await client.complete(ask("x"))


def test_request_validation_rejects_empty_messages() -> None:
    with pytest.raises(ValueError, match="messages"):
        ModelRequest(model="m", messages=[])
