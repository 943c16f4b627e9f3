"""Tools of MCP servers, offered through the same registry, allowlists and executor.

Each configured server (stdio subprocess or streamable HTTP) gets one
long-lived connection, owned by a supervisor task: it connects, lists the
tools, and reconnects with backoff when the connection breaks. At start the
server's tools become :class:`ToolSpec` entries named ``<prefix>__<tool>``
(:func:`registry_name`), so to an agent and to the executor they are tools
like any other: arguments are validated against the server's JSON schema,
the agent's allowlist is checked, and the call runs under the tool's
deadline, concurrency limit and circuit breaker.

Errors: a tool that reports ``isError`` or a protocol error is a refusal the
model can read (:class:`ToolFailedError`); a broken or absent connection is
transient (retried by the executor, counted by the breaker). A server that
cannot be reached at start stops the service with one clear line: agents
would otherwise be promised tools that do not exist.

What an MCP tool may do is unknown to us, so it is side-effecting and not
idempotent unless its annotations say otherwise (``readOnlyHint``,
``idempotentHint``) or its server's configuration says ``idempotent``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import keyword
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from typing import Any, ClassVar, cast

import anyio
from mcp import Client, StdioServerParameters
from mcp import types as mcp_types
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel, ConfigDict, Field, create_model

from services.tools.errors import RegistryError, ToolFailedError, TransientToolError
from services.tools.registry import ToolRegistry, ToolSpec
from services.tools.settings import McpServerConfig
from shared.resilience import RetryPolicy

__all__ = [
    "McpBridge",
    "McpConnection",
    "arguments_model",
    "content_of",
    "registry_name",
    "tool_spec",
]

log = logging.getLogger("mindstream.tools.mcp")

_SAFE = re.compile(r"[^A-Za-z0-9_-]")
_MAX_NAME = 64
_CONNECTION_CLOSED = -32000
_TRANSPORT_ERRORS = (OSError, anyio.ClosedResourceError, anyio.BrokenResourceError,
                     anyio.EndOfStream)  # fmt: skip
_RETRY = RetryPolicy(max_attempts=3, base_delay=0.1, max_delay=1.0)

ClientFactory = Callable[[McpServerConfig, AsyncExitStack], Any]


def registry_name(prefix: str, tool: str) -> str:
    """``<prefix>__<tool>`` in the tool-name alphabet; long names keep a hash suffix so
    two different tools never share a name."""
    name = f"{prefix}__{_SAFE.sub('_', tool)}"
    if len(name) > _MAX_NAME:
        suffix = hashlib.sha256(tool.encode()).hexdigest()[:8]
        name = f"{name[: _MAX_NAME - 9]}_{suffix}"
    return name


class McpArguments(BaseModel):
    """Base of MCP argument models: shows the model the server's own schema."""

    mcp_input_schema: ClassVar[dict[str, Any]] = {}
    mcp_wire_names: ClassVar[dict[str, str]] = {}

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return copy.deepcopy(cls.mcp_input_schema)


_JSON_TYPES: dict[str, Any] = {
    "string": str, "integer": int, "number": float, "boolean": bool,
    "array": list[Any], "object": dict[str, Any], "null": type(None),
}  # fmt: skip


def _python_type(prop: Mapping[str, Any]) -> Any:
    kind = prop.get("type")
    if isinstance(kind, str):
        return _JSON_TYPES.get(kind, Any)
    if isinstance(kind, list) and kind and all(isinstance(k, str) for k in kind):
        types = [_JSON_TYPES.get(k, Any) for k in kind]
        if Any in types:
            return Any
        union = types[0]
        for t in types[1:]:
            union = union | t
        return union
    return Any


def arguments_model(tool_name: str, schema: Mapping[str, Any]) -> type[McpArguments]:
    """A pydantic model of the top level of an MCP input schema.

    Types, required-ness and defaults are checked here so a wrong call
    comes back as ``invalid_arguments`` without a round trip; deeper
    constraints are the server's to check (its refusal reaches the model).
    Unknown arguments are refused unless the schema allows them.
    """
    props = schema.get("properties")
    props = props if isinstance(props, Mapping) else {}
    required = set(schema.get("required") or [])
    extra_allowed = not props or schema.get("additionalProperties") not in (None, False)
    fields: dict[str, Any] = {}
    wire: dict[str, str] = {}
    for i, (wire_name, raw) in enumerate(props.items()):
        prop = raw if isinstance(raw, Mapping) else {}
        field_name = wire_name
        if not wire_name.isidentifier() or keyword.iskeyword(wire_name) or wire_name[0] == "_":
            field_name = f"arg{i}_{_SAFE.sub('_', wire_name).strip('_')}"
        wire[field_name] = wire_name
        kind = _python_type(prop)
        info: dict[str, Any] = {"description": prop.get("description")}
        if field_name != wire_name:
            info["alias"] = wire_name
        if wire_name in required:
            fields[field_name] = (kind, Field(..., **info))
        elif "default" in prop:
            fields[field_name] = (kind, Field(prop["default"], **info))
        else:
            fields[field_name] = (kind | None, Field(None, **info))
    base = type("McpArgumentsBase", (McpArguments,), {
        "model_config": ConfigDict(extra="allow" if extra_allowed else "forbid",
                                   populate_by_name=True),
    })  # fmt: skip
    model = cast("type[McpArguments]",
                 create_model(f"{tool_name}_arguments", __base__=base, **fields))
    model.mcp_input_schema = dict(schema)
    model.mcp_wire_names = wire
    return model


def content_of(result: mcp_types.CallToolResult) -> Any:
    """A tool result as JSON for the model: structured content if any, else the text."""
    if result.is_error:
        text = _text(result) or "the MCP tool reported an error"
        raise ToolFailedError(text[:1000])
    if result.structured_content is not None:
        return result.structured_content
    blocks = result.content
    if all(isinstance(b, mcp_types.TextContent) for b in blocks):
        texts = [b.text for b in blocks if isinstance(b, mcp_types.TextContent)]
        return texts[0] if len(texts) == 1 else texts
    return [b.model_dump(mode="json", by_alias=True, exclude_none=True) for b in blocks]


def _text(result: mcp_types.CallToolResult) -> str:
    return "\n".join(b.text for b in result.content if isinstance(b, mcp_types.TextContent))


def _default_client(config: McpServerConfig, stack: AsyncExitStack) -> Client:
    if config.transport == "stdio":
        assert config.command is not None
        params = StdioServerParameters(command=config.command, args=list(config.args),
                                       env=dict(config.env) or None, cwd=config.cwd)  # fmt: skip
        return Client(params, cache=None)
    assert config.url is not None
    if not config.headers:
        return Client(config.url, cache=None)
    # The SDK's own client factory keeps its recommended timeouts; headers carry auth.
    from mcp.shared._httpx_utils import create_mcp_http_client

    http = create_mcp_http_client(headers=dict(config.headers))
    stack.push_async_callback(http.aclose)
    return Client(streamable_http_client(config.url, http_client=http), cache=None)


class McpConnection:
    """One server's connection, kept alive by a supervisor task."""

    def __init__(self, config: McpServerConfig, *, client_factory: ClientFactory = _default_client,
                 max_backoff_s: float = 30.0) -> None:  # fmt: skip
        self.config = config
        self._factory = client_factory
        self._max_backoff = max_backoff_s
        self._client: Client | None = None
        self._tools: list[mcp_types.Tool] = []
        self._connected = asyncio.Event()
        self._broken = asyncio.Event()
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.last_error: str | None = None

    @property
    def connected(self) -> bool:
        return self._client is not None

    async def start(self) -> list[mcp_types.Tool]:
        """Connect (waiting at most ``connect_timeout_s``) and return the server's tools."""
        self._task = asyncio.create_task(self._supervise(), name=f"mcp-{self.config.name}")
        connected = asyncio.ensure_future(self._connected.wait())
        try:
            await asyncio.wait({connected, self._task}, timeout=self.config.connect_timeout_s,
                               return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        finally:
            connected.cancel()
        if not self._connected.is_set():
            await self.stop()
            raise RegistryError(
                f"MCP server {self.config.name!r} ({self.config.transport}): cannot connect "
                f"within {self.config.connect_timeout_s:g}s: {self.last_error or 'no answer'}"
            )
        return list(self._tools)

    async def stop(self) -> None:
        self._closing.set()
        task, self._task = self._task, None
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=10.0)
        except (TimeoutError, Exception):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _supervise(self) -> None:
        backoff = 0.2
        while not self._closing.is_set():
            try:
                async with AsyncExitStack() as stack:
                    client = await stack.enter_async_context(self._factory(self.config, stack))
                    self._tools = await _list_tools(client)
                    self._broken.clear()
                    self._client = client
                    self.last_error = None
                    self._connected.set()
                    backoff = 0.2
                    log.info("MCP server %s connected (%d tools)", self.config.name,
                             len(self._tools))  # fmt: skip
                    await _first_of(self._closing, self._broken)
            except Exception as exc:
                self.last_error = _describe(exc)
                log.warning("MCP server %s: connection lost or refused: %s", self.config.name,
                            self.last_error)  # fmt: skip
            finally:
                self._client = None
            if self._closing.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), timeout=backoff)
            backoff = min(backoff * 2, self._max_backoff)

    async def call(self, tool: str, arguments: dict[str, Any]) -> Any:
        client = self._client
        if client is None:
            raise TransientToolError(
                f"MCP server {self.config.name!r} is not connected"
                + (f" ({self.last_error})" if self.last_error else "")
            )
        try:
            result = await client.call_tool(tool, arguments)
        except MCPError as exc:
            if exc.code == _CONNECTION_CLOSED:
                self._broken.set()
                raise TransientToolError(
                    f"MCP server {self.config.name!r} closed the connection"
                ) from None
            raise ToolFailedError(f"MCP server {self.config.name!r}: {exc.message}") from None
        except _TRANSPORT_ERRORS as exc:
            self._broken.set()
            raise TransientToolError(
                f"MCP server {self.config.name!r} is unreachable: {_describe(exc)}"
            ) from None
        return content_of(result)


async def _list_tools(client: Client) -> list[mcp_types.Tool]:
    tools: list[mcp_types.Tool] = []
    cursor: str | None = None
    for _ in range(100):  # a server whose cursor never ends cannot hang the start
        page = await client.list_tools(cursor=cursor)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            break
    return tools


async def _first_of(*events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        return _describe(exc.exceptions[0])
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def tool_spec(config: McpServerConfig, tool: mcp_types.Tool, connection: McpConnection) -> ToolSpec:
    """The registry entry of one MCP tool, calling it through ``connection``."""
    name = registry_name(config.tool_prefix, tool.name)
    model = arguments_model(name, tool.input_schema)
    required = set(tool.input_schema.get("required") or [])
    wire_names = model.mcp_wire_names
    remote = tool.name

    async def call_mcp_tool(**kwargs: Any) -> Any:
        arguments: dict[str, Any] = {}
        for field_name, value in kwargs.items():
            wire = wire_names.get(field_name, field_name)
            if value is None and wire not in required:
                continue  # an optional argument the caller left out
            arguments[wire] = value
        return await connection.call(remote, arguments)

    call_mcp_tool.__qualname__ = f"mcp[{config.name}].{tool.name}"
    hints = tool.annotations
    read_only = bool(hints and hints.read_only_hint)
    idempotent_hint = hints.idempotent_hint if hints else None
    description = (tool.description or f"{tool.name} (from MCP server {config.name})").strip()
    return ToolSpec(
        name=name,
        description=description[:1024],
        fn=call_mcp_tool,
        params_model=model,
        timeout_s=config.timeout_s,
        max_concurrency=config.max_concurrency,
        retry=_RETRY,
        side_effecting=not read_only,
        idempotent=read_only or bool(idempotent_hint) or config.idempotent,
        is_async=True,
    )


class McpBridge:
    """All configured MCP servers: connect at start, register their tools, close at stop."""

    def __init__(self, servers: Sequence[McpServerConfig], *,
                 client_factory: ClientFactory = _default_client) -> None:  # fmt: skip
        self._servers = list(servers)
        self._factory = client_factory
        self.connections: dict[str, McpConnection] = {}

    async def start(self, registry: ToolRegistry) -> list[str]:
        """Connect to every server and register its offered tools; returns their names."""
        names: list[str] = []
        try:
            for config in self._servers:
                conn = McpConnection(config, client_factory=self._factory)
                tools = await conn.start()
                self.connections[config.name] = conn
                for tool in tools:
                    if not config.offers(tool.name):
                        continue
                    spec = tool_spec(config, tool, conn)
                    if spec.name in registry:
                        raise RegistryError(
                            f"MCP server {config.name!r}: tool {tool.name!r} would be "
                            f"registered as {spec.name!r}, which is taken"
                        )
                    registry.register(spec)
                    names.append(spec.name)
        except BaseException:
            await self.stop()
            raise
        return names

    async def stop(self) -> None:
        for conn in self.connections.values():
            await conn.stop()
        self.connections.clear()
