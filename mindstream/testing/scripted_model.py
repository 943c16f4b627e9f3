"""A scripted model server that speaks the OpenAI HTTP API for real.

Tests and the local demo point the unmodified ``openai`` client (and so the
reasoning service's real code path: HTTP, SSE streaming, tool-call deltas,
retries, breakers) at this server instead of a paid model. What it answers is
decided by a script, an ordered list of rules; the first rule whose ``match``
holds answers. A script file (YAML, or JSON) looks like::

    models: [scripted]                  # optional, served by GET /v1/models
    rules:
      - name: weather-answer
        match: {tool_result: get_weather}          # a tool result of this turn
        text: "It is {{tool_result:get_weather}} there."
      - name: weather-ask
        match: {last_user: "weather in (\\w+)"}    # regex search, case-insensitive
        tool_calls:                                # several = parallel calls
          - {name: get_weather, arguments: {city: "{{match:1}}"}}
      - name: flaky
        match: {agent: planner}       # system prompt mentions it, or user/metadata names it
        status: 500                   # 500 | 429 | 400 ...
        times: 2                      # fail twice, then fall through (or answer, below)
        text: "recovered"
      - name: broken
        match: {last_user: "break"}
        malformed_tool_call: true     # arguments that are not JSON
        tool_calls: [{name: search, arguments: {q: x}}]
      - text: "default answer"        # no match = matches everything

Matching keys (all given keys must hold): ``last_user`` (regex on the last
user message), ``system`` (regex on the system prompt), ``agent`` (name),
``tool_result`` (a tool name or list: a tool result message for each exists
*after the last user message*, so an earlier turn's results do not count),
``model`` (exact model name). Answer keys: ``text``, ``tool_calls``,
``delay_ms`` (before the first byte), ``chunk_delay_ms``, ``status``/``times``/
``retry_after``, ``malformed_tool_call``, ``max_uses``, ``usage``.

Templates in answers (text and string tool arguments): ``{{last_user}}``,
``{{tool_result:NAME}}`` (content of the newest result of that tool;
``{{tool_result:NAME|a.b}}`` takes a field of a JSON result), and
``{{match:N}}`` (group N of the ``last_user`` regex).

Test hooks: ``GET /_requests`` lists the requests received, ``DELETE
/_requests`` clears them, ``POST /_script`` replaces the script (and resets
the counters).

Run it as ``python -m mindstream.testing.scripted_model --script FILE --port 0``
(it prints ``listening on http://HOST:PORT``), or in process with
``async with ScriptedModelServer(script) as server: server.base_url``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import itertools
import json
import math
import re
import socket
import struct
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
import yaml
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

__all__ = [
    "EMBEDDING_DIM",
    "Rule",
    "Script",
    "ScriptError",
    "ScriptedModelServer",
    "build_app",
    "hashing_embedding",
    "load_script",
    "main",
]

EMBEDDING_DIM = 64
_TEMPLATE = re.compile(r"\{\{\s*(last_user|tool_result:[\w.\-]+(?:\|[\w.]+)?|match:\d+)\s*\}\}")
_MATCH_KEYS = frozenset({"last_user", "system", "agent", "tool_result", "model"})
_RULE_KEYS = frozenset(
    {
        "name",
        "match",
        "text",
        "tool_calls",
        "delay_ms",
        "chunk_delay_ms",
        "status",
        "times",
        "retry_after",
        "malformed_tool_call",
        "max_uses",
        "usage",
        "message",
    }
)


class ScriptError(ValueError):
    """The script is not well formed; raised at load time, never mid-request."""


@dataclass
class Rule:
    """One scripted answer and the condition under which it is given."""

    name: str
    match: dict[str, Any] = field(default_factory=dict)
    text: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    delay_ms: int = 0
    chunk_delay_ms: int = 0
    status: int | None = None
    times: int | None = None
    retry_after: float | None = None
    message: str | None = None
    malformed_tool_call: bool = False
    max_uses: int | None = None
    usage: dict[str, int] | None = None
    failures: int = 0
    uses: int = 0

    @property
    def answers(self) -> bool:
        return self.text is not None or bool(self.tool_calls) or self.malformed_tool_call


@dataclass
class Script:
    rules: list[Rule]
    models: list[str] = field(default_factory=lambda: ["scripted"])


def _rule_from(raw: Any, index: int) -> Rule:
    if not isinstance(raw, Mapping):
        raise ScriptError(f"rule #{index}: expected a mapping, got {type(raw).__name__}")
    unknown = set(raw) - _RULE_KEYS
    if unknown:
        raise ScriptError(f"rule #{index}: unknown keys {sorted(unknown)}")
    match = raw.get("match") or {}
    if not isinstance(match, Mapping) or set(match) - _MATCH_KEYS:
        raise ScriptError(f"rule #{index}: match keys must be among {sorted(_MATCH_KEYS)}")
    for key in ("last_user", "system"):
        if key in match:
            try:
                re.compile(str(match[key]))
            except re.error as exc:
                raise ScriptError(f"rule #{index}: bad regex in match.{key}: {exc}") from exc
    calls = raw.get("tool_calls") or []
    if not isinstance(calls, list) or not all(
        isinstance(c, Mapping) and isinstance(c.get("name"), str) for c in calls
    ):
        raise ScriptError(f"rule #{index}: tool_calls must be a list of {{name, arguments}}")
    rule = Rule(
        name=str(raw.get("name") or f"rule-{index}"),
        match=dict(match),
        text=None if raw.get("text") is None else str(raw["text"]),
        tool_calls=[dict(c) for c in calls],
        delay_ms=int(raw.get("delay_ms", 0)),
        chunk_delay_ms=int(raw.get("chunk_delay_ms", 0)),
        status=None if raw.get("status") is None else int(raw["status"]),
        times=None if raw.get("times") is None else int(raw["times"]),
        retry_after=None if raw.get("retry_after") is None else float(raw["retry_after"]),
        message=raw.get("message"),
        malformed_tool_call=bool(raw.get("malformed_tool_call", False)),
        max_uses=None if raw.get("max_uses") is None else int(raw["max_uses"]),
        usage=raw.get("usage"),
    )
    if rule.status is None and not rule.answers:
        raise ScriptError(f"rule #{index} ({rule.name}): needs text, tool_calls or status")
    return rule


def load_script(source: Script | Mapping[str, Any] | list[Any] | str | Path) -> Script:
    """Build a :class:`Script` from a parsed document, YAML text, or a file path."""
    if isinstance(source, Script):
        return source
    doc: Any = source
    if isinstance(source, Path):
        doc = yaml.safe_load(source.read_text(encoding="utf-8"))
    elif isinstance(source, str):
        doc = yaml.safe_load(source)
    if isinstance(doc, list):
        doc = {"rules": doc}
    if not isinstance(doc, Mapping) or not isinstance(doc.get("rules"), list):
        raise ScriptError("a script is a mapping with a 'rules' list (or a bare list of rules)")
    models = doc.get("models") or ["scripted"]
    return Script(
        rules=[_rule_from(r, i) for i, r in enumerate(doc["rules"])],
        models=[str(m) for m in models],
    )


# --- request inspection -------------------------------------------------------------------


def _text_of(content: Any) -> str:
    """Message content may be a string or a list of typed parts; tests care about the text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return str(content)


@dataclass
class _View:
    """What rules look at in one chat request."""

    body: dict[str, Any]
    last_user: str
    system: str
    turn_tool_results: dict[str, str]
    all_tool_results: dict[str, str]

    @classmethod
    def of(cls, body: dict[str, Any]) -> _View:
        messages = [m for m in body.get("messages", []) if isinstance(m, Mapping)]
        names: dict[str, str] = {}
        last_user, system = "", ""
        turn: dict[str, str] = {}
        every: dict[str, str] = {}
        for msg in messages:
            role = msg.get("role")
            if role == "user":
                last_user = _text_of(msg.get("content"))
                turn = {}
            elif role in ("system", "developer"):
                system = "\n".join(s for s in (system, _text_of(msg.get("content"))) if s)
            elif role == "assistant":
                for call in msg.get("tool_calls") or []:
                    fn = call.get("function") or {}
                    names[str(call.get("id"))] = str(fn.get("name", ""))
            elif role == "tool":
                name = msg.get("name") or names.get(str(msg.get("tool_call_id")), "")
                turn[name] = every[name] = _text_of(msg.get("content"))
        return cls(body, last_user, system, turn, every)

    def agent_names(self) -> set[str]:
        meta = self.body.get("metadata") or {}
        found = {str(self.body.get("user", ""))}
        if isinstance(meta, Mapping):
            found |= {str(meta.get("agent_id", "")), str(meta.get("agent", ""))}
        return found - {""}


def _matches(rule: Rule, view: _View) -> re.Match[str] | bool:
    """True (or the last_user match object) when every condition of the rule holds."""
    cond = rule.match
    found: re.Match[str] | bool = True
    if "model" in cond and str(view.body.get("model")) != str(cond["model"]):
        return False
    if "system" in cond and not re.search(str(cond["system"]), view.system, re.I | re.S):
        return False
    if "agent" in cond:
        agent = str(cond["agent"])
        in_prompt = re.search(rf"\b{re.escape(agent)}\b", view.system) is not None
        if not in_prompt and agent not in view.agent_names():
            return False
    if "tool_result" in cond:
        wanted = cond["tool_result"]
        tools = [wanted] if isinstance(wanted, str) else list(wanted)
        if not all(t in view.turn_tool_results for t in tools):
            return False
    if "last_user" in cond:
        m = re.search(str(cond["last_user"]), view.last_user, re.I | re.S)
        if m is None:
            return False
        found = m
    return found


def _json_path(content: str, path: str) -> str:
    """``{{tool_result:NAME|a.b}}``: a field of a JSON tool result ("" if absent)."""
    try:
        value: Any = json.loads(content)
    except ValueError:
        return ""
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _render(value: Any, view: _View, m: re.Match[str] | bool) -> Any:
    if isinstance(value, str):

        def sub(t: re.Match[str]) -> str:
            key = t.group(1)
            if key == "last_user":
                return view.last_user
            if key.startswith("tool_result:"):
                name, _, path = key.split(":", 1)[1].partition("|")
                content = view.all_tool_results.get(name, "")
                return _json_path(content, path) if path else content
            if isinstance(m, re.Match):
                group = int(key.split(":", 1)[1])
                if group <= (m.re.groups or 0):
                    return m.group(group) or ""
            return ""

        return _TEMPLATE.sub(sub, value)
    if isinstance(value, list):
        return [_render(v, view, m) for v in value]
    if isinstance(value, Mapping):
        return {k: _render(v, view, m) for k, v in value.items()}
    return value


# --- answers ------------------------------------------------------------------------------


def _tokens(text: str) -> int:
    """A deterministic stand-in for a tokenizer: about four characters a token."""
    return max(1, math.ceil(len(text) / 4)) if text else 0


@dataclass
class _Answer:
    text: str | None
    tool_calls: list[dict[str, Any]]
    usage: dict[str, int]
    rule: Rule

    @property
    def finish_reason(self) -> str:
        return "tool_calls" if self.tool_calls else "stop"


def _answer(rule: Rule, view: _View, m: re.Match[str] | bool) -> _Answer:
    text = None if rule.text is None else str(_render(rule.text, view, m))
    calls: list[dict[str, Any]] = []
    specs = rule.tool_calls or (
        [{"name": "broken_tool", "arguments": {}}] if rule.malformed_tool_call else []
    )
    for i, spec in enumerate(specs):
        args = _render(spec.get("arguments", {}), view, m)
        encoded = args if isinstance(args, str) else json.dumps(args)
        if rule.malformed_tool_call:
            encoded = encoded[:-1] if len(encoded) > 1 else '{"'
        calls.append(
            {
                "id": str(spec.get("id") or f"call_{uuid.uuid4().hex[:12]}_{i}"),
                "type": "function",
                "function": {"name": spec["name"], "arguments": encoded},
            }
        )
    prompt = _tokens(json.dumps(view.body.get("messages", []), default=str))
    completion = _tokens(text or "") + sum(
        _tokens(c["function"]["name"] + c["function"]["arguments"]) for c in calls
    )
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if rule.usage:
        usage.update({k: int(v) for k, v in rule.usage.items()})
    return _Answer(text=text, tool_calls=calls, usage=usage, rule=rule)


def _error(status: int, message: str, *, kind: str, retry_after: float | None = None) -> Response:
    headers = {} if retry_after is None else {"retry-after": str(retry_after)}
    body = {"error": {"message": message, "type": kind, "param": None, "code": str(status)}}
    return JSONResponse(body, status_code=status, headers=headers)


def _fail(rule: Rule) -> Response:
    status = rule.status or 500
    kinds = {400: "invalid_request_error", 429: "rate_limit_exceeded"}
    message = rule.message or f"scripted failure {status} from rule '{rule.name}'"
    return _error(
        status, message, kind=kinds.get(status, "server_error"), retry_after=rule.retry_after
    )


def _chunks_of(text: str, size: int) -> Iterator[str]:
    for i in range(0, len(text), size):
        yield text[i : i + size]


def _content_pieces(text: str) -> list[str]:
    """Split on word boundaries keeping whitespace, so deltas look like a real model's."""
    return re.findall(r"\S+\s*|\s+", text) or [text]


class _State:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[dict[str, Any]] = []
        self.lock = asyncio.Lock()
        self.arrived = asyncio.Condition()

    async def record(self, entry: dict[str, Any]) -> None:
        async with self.arrived:
            self.requests.append(entry)
            self.arrived.notify_all()

    def pick(self, view: _View) -> tuple[Rule, re.Match[str] | bool] | Response:
        """First applicable rule; failures count down here so each request consumes one."""
        for rule in self.script.rules:
            if rule.max_uses is not None and rule.uses >= rule.max_uses:
                continue
            m = _matches(rule, view)
            if m is False:
                continue
            if rule.status is not None and (rule.times is None or rule.failures < rule.times):
                rule.failures += 1
                return _fail(rule)
            if not rule.answers:
                continue  # a spent "fail N times" rule without an answer falls through
            rule.uses += 1
            return rule, m
        snippet = view.last_user[:80]
        return _error(
            400,
            f"scripted model: no rule matched (last user message: {snippet!r})",
            kind="invalid_request_error",
        )


def hashing_embedding(text: str, dim: int = EMBEDDING_DIM) -> list[float]:
    """A deterministic bag-of-words embedding: texts sharing words are close.

    Each lowercased word (and word bigram) is hashed to a signed bucket; the vector is
    L2-normalised, so cosine similarity is a dot product. Good enough to make
    retrieval tests meaningful without a model.
    """
    words = re.findall(r"\w+", text.lower())
    vec = [0.0] * dim
    for feature in words + [f"{a} {b}" for a, b in itertools.pairwise(words)]:
        digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
        index = int.from_bytes(digest[:4], "little") % dim
        vec[index] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vec))
    return [v / norm for v in vec] if norm else vec


def _add_test_routes(app: FastAPI, state: _State) -> None:
    """Health, model list, and the hooks tests use to inspect and re-script the server."""

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        data = [
            {"id": m, "object": "model", "created": 0, "owned_by": "mindstream"}
            for m in state.script.models
        ]
        return {"object": "list", "data": data}

    @app.get("/_requests")
    async def recorded() -> list[dict[str, Any]]:
        return state.requests

    @app.delete("/_requests")
    async def clear() -> dict[str, int]:
        n = len(state.requests)
        state.requests.clear()
        return {"cleared": n}

    @app.post("/_script")
    async def replace_script(request: Request) -> Response:
        try:
            state.script = load_script((await request.body()).decode())
        except (ScriptError, yaml.YAMLError, UnicodeDecodeError, ValueError) as exc:
            return _error(400, f"bad script: {exc}", kind="invalid_request_error")
        return JSONResponse({"rules": len(state.script.rules)})


def build_app(script: Script) -> FastAPI:
    """The ASGI app; ``app.state.scripted`` holds the script and the request record."""
    app = FastAPI(title="mindstream scripted model", docs_url=None, redoc_url=None)
    state = _State(script)
    app.state.scripted = state

    async def read_json(request: Request) -> dict[str, Any] | Response:
        try:
            body = json.loads(await request.body())
        except ValueError as exc:
            return _error(400, f"body is not JSON: {exc}", kind="invalid_request_error")
        if not isinstance(body, dict):
            return _error(400, "body must be a JSON object", kind="invalid_request_error")
        await state.record({"path": request.url.path, "body": body, "received_at": time.time()})
        return body

    _add_test_routes(app, state)

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Response:
        body = await read_json(request)
        if isinstance(body, Response):
            return body
        raw = body.get("input")
        inputs = [raw] if isinstance(raw, str) else raw
        if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
            return _error(
                400, "input must be a string or a list of strings", kind="invalid_request_error"
            )
        dim = body.get("dimensions")
        dim = EMBEDDING_DIM if dim is None else dim
        if not isinstance(dim, int) or not 1 <= dim <= 4096:
            return _error(
                400, "dimensions must be an integer in 1..4096", kind="invalid_request_error"
            )
        data = []
        for i, text in enumerate(inputs):
            vec = hashing_embedding(text, dim)
            encoded: Any = vec
            if body.get("encoding_format") == "base64":
                encoded = base64.b64encode(struct.pack(f"<{dim}f", *vec)).decode()
            data.append({"object": "embedding", "index": i, "embedding": encoded})
        tokens = sum(_tokens(t) for t in inputs)
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": body.get("model", ""),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        body = await read_json(request)
        if isinstance(body, Response):
            return body
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            return _error(400, "messages must be a non-empty list", kind="invalid_request_error")
        view = _View.of(body)
        async with state.lock:
            picked = state.pick(view)
        if isinstance(picked, Response):
            return picked
        rule, m = picked
        answer = _answer(rule, view, m)
        meta = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:16]}",
            "created": int(time.time()),
            "model": str(body.get("model", "scripted")),
        }
        if not body.get("stream"):
            if rule.delay_ms:
                await asyncio.sleep(rule.delay_ms / 1000)
            message: dict[str, Any] = {"role": "assistant", "content": answer.text}
            if answer.tool_calls:
                message["tool_calls"] = answer.tool_calls
            return JSONResponse(
                {
                    **meta,
                    "object": "chat.completion",
                    "choices": [
                        {
                            "index": 0,
                            "message": message,
                            "finish_reason": answer.finish_reason,
                            "logprobs": None,
                        }
                    ],
                    "usage": answer.usage,
                }
            )
        options = body.get("stream_options") or {}
        include_usage = isinstance(options, Mapping) and bool(options.get("include_usage"))
        return StreamingResponse(
            _stream(answer, meta, include_usage), media_type="text/event-stream"
        )

    return app


async def _stream(answer: _Answer, meta: dict[str, Any], include_usage: bool) -> AsyncIterator[str]:
    rule = answer.rule

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        payload = {
            **meta,
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
            **extra,
        }
        if include_usage and "usage" not in extra:
            payload["usage"] = None
        return f"data: {json.dumps(payload)}\n\n"

    async def pause(ms: int) -> None:
        if ms:
            await asyncio.sleep(ms / 1000)

    await pause(rule.delay_ms)
    yield chunk({"role": "assistant", "content": ""})
    for piece in _content_pieces(answer.text) if answer.text else []:
        await pause(rule.chunk_delay_ms)
        yield chunk({"content": piece})
    for index, call in enumerate(answer.tool_calls):
        await pause(rule.chunk_delay_ms)
        yield chunk(
            {
                "tool_calls": [
                    {
                        "index": index,
                        "id": call["id"],
                        "type": "function",
                        "function": {"name": call["function"]["name"], "arguments": ""},
                    }
                ]
            }
        )
        for frag in _chunks_of(call["function"]["arguments"], 7):
            await pause(rule.chunk_delay_ms)
            yield chunk({"tool_calls": [{"index": index, "function": {"arguments": frag}}]})
    yield chunk({}, answer.finish_reason)
    if include_usage:
        usage_chunk = {
            **meta,
            "object": "chat.completion.chunk",
            "choices": [],
            "usage": answer.usage,
        }
        yield f"data: {json.dumps(usage_chunk)}\n\n"
    yield "data: [DONE]\n\n"


# --- running it ---------------------------------------------------------------------------


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


class ScriptedModelServer:
    """The server on a free port inside the current event loop, for tests.

    ``base_url`` ends in ``/v1``, ready for ``AsyncOpenAI(base_url=...)``.
    """

    def __init__(
        self,
        script: Script | Mapping[str, Any] | list[Any] | str | Path,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.app = build_app(load_script(script))
        self._host, self._port = host, port
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.port = 0

    @property
    def root_url(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Requests received so far, oldest first (the same list ``GET /_requests`` serves)."""
        state: _State = self.app.state.scripted
        return state.requests

    async def wait_for_requests(self, count: int, within: float = 5.0) -> list[dict[str, Any]]:
        """Wait until ``count`` requests have arrived (TimeoutError otherwise)."""
        state: _State = self.app.state.scripted
        async with asyncio.timeout(within), state.arrived:
            await state.arrived.wait_for(lambda: len(state.requests) >= count)
        return state.requests

    def set_script(self, script: Script | Mapping[str, Any] | list[Any] | str | Path) -> None:
        self.app.state.scripted.script = load_script(script)

    async def start(self) -> None:
        sock = _bind(self._host, self._port)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("scripted model server stopped during start-up")
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
            self._server = self._task = None

    async def __aenter__(self) -> ScriptedModelServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def _serve_forever(script: Script, host: str, port: int) -> None:
    server = ScriptedModelServer(script, host, port)
    await server.start()
    print(f"listening on {server.root_url}", flush=True)
    assert server._task is not None
    await server._task


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mindstream.testing.scripted_model",
        description="OpenAI-compatible server answering from a script",
    )
    parser.add_argument("--script", required=True, type=Path, help="YAML or JSON script file")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)
    try:
        script = load_script(args.script)
    except (OSError, ScriptError, yaml.YAMLError) as exc:
        print(f"error: cannot load script {args.script}: {exc}", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(script, args.host, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
