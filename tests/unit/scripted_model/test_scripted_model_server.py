"""The scripted model server, driven by the official ``openai`` client over real HTTP."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import AsyncOpenAI

from mindstream.testing.scripted_model import (
    EMBEDDING_DIM,
    ScriptedModelServer,
    ScriptError,
    hashing_embedding,
    load_script,
)

pytestmark = pytest.mark.unit

WEATHER_SCRIPT = r"""
rules:
  - name: answer-with-weather
    match: {tool_result: get_weather}
    text: "It is {{tool_result:get_weather}} in the city."
  - name: ask-weather-and-time
    match: {last_user: "weather in (\\w+)"}
    tool_calls:
      - {name: get_weather, arguments: {city: "{{match:1}}"}}
      - {name: get_time, arguments: {tz: "Europe/{{match:1}}"}}
  - name: broken
    match: {last_user: "break"}
    malformed_tool_call: true
    tool_calls: [{name: search, arguments: {q: "x"}}]
  - name: planner
    match: {agent: planner}
    text: "plan for: {{last_user}}"
  - name: echo
    text: "You said: {{last_user}}"
"""


@pytest.fixture(scope="module")
async def shared_server() -> AsyncIterator[ScriptedModelServer]:
    async with ScriptedModelServer(WEATHER_SCRIPT) as srv:
        yield srv


@pytest.fixture
def server(shared_server: ScriptedModelServer) -> ScriptedModelServer:
    """One server per module (start-up and shut-down cost ~0.2s); a fresh script per test."""
    shared_server.set_script(WEATHER_SCRIPT)
    shared_server.requests.clear()
    return shared_server


def client_for(server: ScriptedModelServer) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": text}]


async def test_plain_answer_with_usage(server: ScriptedModelServer) -> None:
    reply = await client_for(server).chat.completions.create(model="m", messages=user("hello"))
    choice = reply.choices[0]
    assert choice.message.content == "You said: hello"
    assert choice.finish_reason == "stop"
    assert reply.usage is not None
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert reply.usage.completion_tokens > 0


async def test_streaming_deltas_reassemble_and_usage_comes_last(
    server: ScriptedModelServer,
) -> None:
    stream = await client_for(server).chat.completions.create(
        model="m",
        messages=user("tell me something long enough to split"),
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, chunks = [], []
    async for chunk in stream:
        chunks.append(chunk)
        pieces += [c.delta.content for c in chunk.choices if c.delta.content]
    assert len(pieces) > 3
    assert "".join(pieces) == "You said: tell me something long enough to split"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0
    assert [c.choices[0].finish_reason for c in chunks[:-1]][-1] == "stop"


async def test_streaming_without_include_usage_has_no_usage(server: ScriptedModelServer) -> None:
    stream = await client_for(server).chat.completions.create(
        model="m", messages=user("hi"), stream=True
    )
    chunks = [c async for c in stream]
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


async def test_parallel_tool_calls_stream_as_indexed_fragments(
    server: ScriptedModelServer,
) -> None:
    stream = await client_for(server).chat.completions.create(
        model="m", messages=user("what's the weather in Paris?"), stream=True
    )
    calls: dict[int, dict[str, str]] = {}
    fragments = 0
    finish = None
    async for chunk in stream:
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for part in choice.delta.tool_calls or []:
                fragments += 1
                acc = calls.setdefault(part.index, {"id": "", "name": "", "args": ""})
                acc["id"] += part.id or ""
                if part.function:
                    acc["name"] += part.function.name or ""
                    acc["args"] += part.function.arguments or ""
    assert finish == "tool_calls"
    assert fragments > 2 * len(calls)  # arguments really arrive in pieces
    assert [calls[i]["name"] for i in sorted(calls)] == ["get_weather", "get_time"]
    assert json.loads(calls[0]["args"]) == {"city": "Paris"}
    assert json.loads(calls[1]["args"]) == {"tz": "Europe/Paris"}
    assert calls[0]["id"] != calls[1]["id"]


async def test_tool_result_conditions_the_follow_up(server: ScriptedModelServer) -> None:
    client = client_for(server)
    first = await client.chat.completions.create(model="m", messages=user("weather in Oslo"))
    calls = first.choices[0].message.tool_calls or []
    assert len(calls) == 2
    history = [
        *user("weather in Oslo"),
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": calls[0].id, "content": "sunny, 21C"},
        {"role": "tool", "tool_call_id": calls[1].id, "content": "12:00"},
    ]
    follow = await client.chat.completions.create(model="m", messages=history)
    assert follow.choices[0].message.content == "It is sunny, 21C in the city."

    # A tool result of an earlier turn does not satisfy the condition for a new question.
    later = await client.chat.completions.create(
        model="m", messages=[*history, {"role": "user", "content": "thanks"}]
    )
    assert later.choices[0].message.content == "You said: thanks"


async def test_fails_n_times_then_succeeds(server: ScriptedModelServer) -> None:
    server.set_script({"rules": [{"status": 500, "times": 2, "text": "recovered"}]})
    client = client_for(server)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError, match="scripted failure 500"):
            await client.chat.completions.create(model="m", messages=user("x"))
    ok = await client.chat.completions.create(model="m", messages=user("x"))
    assert ok.choices[0].message.content == "recovered"
    assert len(server.requests) == 3


async def test_spent_failure_rule_falls_through_to_the_next(server: ScriptedModelServer) -> None:
    server.set_script([{"status": 503, "times": 1}, {"text": "next rule"}])
    client = client_for(server)
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(model="m", messages=user("x"))
    ok = await client.chat.completions.create(model="m", messages=user("x"))
    assert ok.choices[0].message.content == "next rule"


async def test_rate_limit_carries_retry_after(server: ScriptedModelServer) -> None:
    server.set_script([{"status": 429, "retry_after": 7}])
    with pytest.raises(openai.RateLimitError) as caught:
        await client_for(server).chat.completions.create(model="m", messages=user("x"))
    assert caught.value.response.headers["retry-after"] == "7.0"


async def test_malformed_tool_call_arguments_are_not_json(server: ScriptedModelServer) -> None:
    reply = await client_for(server).chat.completions.create(
        model="m", messages=user("please break")
    )
    (call,) = reply.choices[0].message.tool_calls or []
    assert call.function.name == "search"
    with pytest.raises(json.JSONDecodeError):
        json.loads(call.function.arguments)


async def test_agent_rule_matches_system_prompt_or_user_field(
    server: ScriptedModelServer,
) -> None:
    client = client_for(server)
    by_prompt = await client.chat.completions.create(
        model="m",
        messages=[
            {"role": "system", "content": "You are the planner agent."},
            {"role": "user", "content": "go"},
        ],
    )
    by_user = await client.chat.completions.create(model="m", messages=user("go"), user="planner")
    assert by_prompt.choices[0].message.content == "plan for: go"
    assert by_user.choices[0].message.content == "plan for: go"


async def test_no_matching_rule_is_a_clear_400(server: ScriptedModelServer) -> None:
    server.set_script([{"match": {"last_user": "^only$"}, "text": "x"}])
    with pytest.raises(openai.BadRequestError, match="no rule matched"):
        await client_for(server).chat.completions.create(model="m", messages=user("other"))


async def test_max_uses_limits_a_rule(server: ScriptedModelServer) -> None:
    server.set_script([{"max_uses": 1, "text": "first"}, {"text": "then"}])
    client = client_for(server)
    answers = [
        (await client.chat.completions.create(model="m", messages=user("x")))
        .choices[0]
        .message.content
        for _ in range(2)
    ]
    assert answers == ["first", "then"]


async def test_embeddings_are_deterministic_normalised_and_meaningful(
    server: ScriptedModelServer,
) -> None:
    client = client_for(server)
    texts = ["the cat sat on the mat", "the cat sat on a mat", "quarterly revenue grew"]
    got = await client.embeddings.create(model="e", input=texts)  # client asks for base64
    floats = await client.embeddings.create(model="e", input=texts, encoding_format="float")
    vecs = [d.embedding for d in got.data]
    assert all(len(v) == EMBEDDING_DIM for v in vecs)
    for v, f in zip(vecs, floats.data, strict=True):
        assert v == pytest.approx(f.embedding, abs=1e-6)
        assert math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-5)

    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cos(vecs[0], vecs[1]) > cos(vecs[0], vecs[2])
    assert hashing_embedding(texts[0]) == pytest.approx(vecs[0], abs=1e-6)


async def test_embeddings_reject_bad_input(server: ScriptedModelServer) -> None:
    with pytest.raises(openai.BadRequestError, match="input must be"):
        await client_for(server).embeddings.create(model="e", input=[1, 2])  # type: ignore[list-item]


async def test_models_health_and_request_record(server: ScriptedModelServer) -> None:
    models = await client_for(server).models.list()
    assert [m.id for m in models.data] == ["scripted"]
    await client_for(server).chat.completions.create(model="m", messages=user("recorded"))
    async with httpx.AsyncClient(base_url=server.root_url) as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        recorded = (await http.get("/_requests")).json()
        assert recorded[-1]["path"] == "/v1/chat/completions"
        assert recorded[-1]["body"]["messages"][-1]["content"] == "recorded"
        assert (await http.delete("/_requests")).json()["cleared"] == len(recorded)
        assert (await http.get("/_requests")).json() == []


async def test_script_can_be_replaced_at_runtime(server: ScriptedModelServer) -> None:
    async with httpx.AsyncClient(base_url=server.root_url) as http:
        resp = await http.post("/_script", content="rules: [{text: replaced}]")
        assert resp.status_code == 200
        bad = await http.post("/_script", content="rules: [{nonsense: 1}]")
        assert bad.status_code == 400
        assert "unknown keys" in bad.json()["error"]["message"]
    reply = await client_for(server).chat.completions.create(model="m", messages=user("x"))
    assert reply.choices[0].message.content == "replaced"


async def test_bad_json_body_is_400(server: ScriptedModelServer) -> None:
    async with httpx.AsyncClient(base_url=server.root_url) as http:
        resp = await http.post("/v1/chat/completions", content=b"{not json")
        assert resp.status_code == 400
        empty = await http.post("/v1/chat/completions", json={"model": "m", "messages": []})
        assert empty.status_code == 400


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"rules": [{"text": "x", "bogus": 1}]}, "unknown keys"),
        ({"rules": [{"match": {"last_user": "("}, "text": "x"}]}, "bad regex"),
        ({"rules": [{"match": {"colour": "red"}, "text": "x"}]}, "match keys"),
        ({"rules": [{"name": "empty"}]}, "needs text, tool_calls or status"),
        ({"rules": [{"tool_calls": [{"arguments": {}}]}]}, "tool_calls must be"),
        ({"nope": []}, "'rules' list"),
    ],
)
def test_bad_scripts_are_rejected_at_load(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(ScriptError, match=message):
        load_script(doc)


def test_cli_prints_its_port_and_serves(tmp_path: Path) -> None:
    script = tmp_path / "script.yaml"
    script.write_text("rules: [{text: from the cli}]\n", encoding="utf-8")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mindstream.testing.scripted_model",
            "--script",
            str(script),
            "--port",
            "0",
            "--host",
            "127.0.0.1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("listening on http://127.0.0.1:")
        url = line.removeprefix("listening on ")
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        reply = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=5)
        assert reply.json()["choices"][0]["message"]["content"] == "from the cli"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_cli_reports_a_bad_script(tmp_path: Path) -> None:
    script = tmp_path / "bad.yaml"
    script.write_text("rules: [{}]\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "mindstream.testing.scripted_model", "--script", str(script)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "cannot load script" in done.stderr


async def test_embedding_dimensions_are_validated(server: ScriptedModelServer) -> None:
    client = client_for(server)
    got = await client.embeddings.create(model="e", input="x", dimensions=8)
    assert len(got.data[0].embedding) == 8
    with pytest.raises(openai.BadRequestError, match="dimensions"):
        await client.embeddings.create(model="e", input="x", dimensions=0)
