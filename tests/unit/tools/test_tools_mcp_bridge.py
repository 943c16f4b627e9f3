"""MCP servers' tools join the registry and run through the executor like local tools."""

from __future__ import annotations

from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from mcp import Client
from mcp import types as mcp_types
from pydantic import ValidationError

from services.tools.errors import RegistryError, ToolFailedError, TransientToolError
from services.tools.executor import ExecutionRequest, Executor
from services.tools.mcp_bridge import (
    McpBridge,
    McpConnection,
    arguments_model,
    content_of,
    registry_name,
)
from services.tools.registry import RecoveryPolicy, ToolRegistry, describe
from services.tools.settings import McpServerConfig
from tests.unit.tools import tools_mcp_fixture as fixture

pytestmark = pytest.mark.unit


def in_process(config: McpServerConfig, stack: AsyncExitStack) -> Client:
    return Client(fixture.app, cache=None)


def config(**extra: Any) -> McpServerConfig:
    return McpServerConfig.model_validate(
        {"name": "fixture", "transport": "http", "url": "http://unused/mcp", **extra}
    )


def call(tool: str, arguments: dict[str, Any], allow: list[str] | None = None) -> ExecutionRequest:
    return ExecutionRequest(
        call_id="c-1", tool=tool, arguments=arguments,
        agent_allowlist=allow if allow is not None else [tool],
        deadline=datetime.now(UTC) + timedelta(seconds=20),
    )  # fmt: skip


def test_registry_names_fit_the_tool_name_alphabet() -> None:
    assert registry_name("files", "read") == "files__read"
    assert registry_name("files", "weird.name/x") == "files__weird_name_x"
    long_a, long_b = registry_name("s", "a" * 80), registry_name("s", "a" * 79 + "b")
    assert len(long_a) == 64
    assert long_a != long_b


def test_arguments_model_checks_types_required_and_unknown_arguments() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "integer", "description": "first"},
            "b": {"type": "integer", "default": 2},
            "user-id": {"type": ["string", "null"]},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["a"],
    }
    model = arguments_model("x__t", schema)
    ok = model.model_validate({"a": 1, "user-id": "u"})
    assert ok.model_dump(by_alias=True) == {"a": 1, "b": 2, "user-id": "u", "tags": None}
    with pytest.raises(ValidationError):
        model.model_validate({"b": 1})
    with pytest.raises(ValidationError):
        model.model_validate({"a": "not a number"})
    with pytest.raises(ValidationError):
        model.model_validate({"a": 1, "surprise": True})
    assert model.model_json_schema() == schema  # the model sees the server's own schema


def test_arguments_model_allows_extra_arguments_when_the_schema_does() -> None:
    model = arguments_model("x__t", {"type": "object", "additionalProperties": True})
    assert model.model_validate({"anything": 1}).model_extra == {"anything": 1}


def test_content_prefers_structured_content_and_turns_errors_into_refusals() -> None:
    text = mcp_types.TextContent(type="text", text="hi")
    assert content_of(mcp_types.CallToolResult(content=[text], structured_content={"r": 1})) == {
        "r": 1
    }
    assert content_of(mcp_types.CallToolResult(content=[text])) == "hi"
    assert content_of(mcp_types.CallToolResult(content=[text, text])) == ["hi", "hi"]
    with pytest.raises(ToolFailedError, match="bad input"):
        content_of(mcp_types.CallToolResult(
            content=[mcp_types.TextContent(type="text", text="bad input")], is_error=True))


def test_server_config_needs_the_fields_of_its_transport() -> None:
    with pytest.raises(ValidationError, match="needs 'command'"):
        McpServerConfig(name="s", transport="stdio")
    with pytest.raises(ValidationError, match="needs 'url'"):
        McpServerConfig(name="s", transport="http")
    with pytest.raises(ValidationError):
        McpServerConfig(name="bad name", transport="http", url="http://x/mcp")
    offers = config(tools=["add", "sh*"])
    assert [offers.offers(t) for t in ("add", "shout", "refuse")] == [True, True, False]


async def test_bridge_registers_offered_tools_and_calls_them_through_the_executor() -> None:
    registry = ToolRegistry()
    bridge = McpBridge([config(tools=["add", "shout", "refuse", "weird.name"])],
                       client_factory=in_process)  # fmt: skip
    names = await bridge.start(registry)
    try:
        assert sorted(names) == ["fixture__add", "fixture__refuse", "fixture__shout",
                                 "fixture__weird_name"]  # fmt: skip
        spec = registry.get("fixture__add")
        assert spec.recovery is RecoveryPolicy.FAIL  # unknown effects: never run twice
        rows = {r["name"]: r for r in describe(registry)}
        assert [p["name"] for p in rows["fixture__add"]["params"]] == ["a", "b"]
        executor = Executor(registry)
        added = await executor.execute(call("fixture__add", {"a": 40}))
        assert (added.ok, added.content) == (True, {"result": 42})
        shouted = await executor.execute(call("fixture__shout", {"text": "hi"}))
        assert shouted.content == {"result": "HI"}  # optional `times` left out, not sent as null
        refused = await executor.execute(call("fixture__refuse", {"reason": "no way"}))
        assert (refused.ok, refused.error_code) == (False, "tool_failed")
        invalid = await executor.execute(call("fixture__add", {"a": "x"}))
        assert invalid.error_code == "invalid_arguments"
        not_allowed = await executor.execute(call("fixture__add", {"a": 1}, allow=["other"]))
        assert not_allowed.error_code == "not_allowed"
    finally:
        await bridge.stop()


async def test_tools_outside_the_server_allowlist_are_not_registered() -> None:
    registry = ToolRegistry()
    bridge = McpBridge([config(tools=["add"], prefix="calc")], client_factory=in_process)
    try:
        assert await bridge.start(registry) == ["calc__add"]
    finally:
        await bridge.stop()
    assert registry.names() == ["calc__add"]


async def test_a_name_clash_with_a_local_tool_stops_the_start() -> None:
    registry = ToolRegistry()

    @registry.tool
    def fixture__add(a: int) -> int:
        """A local tool that took the name first."""
        return a

    bridge = McpBridge([config()], client_factory=in_process)
    with pytest.raises(RegistryError, match="taken"):
        await bridge.start(registry)
    assert bridge.connections == {}


async def test_an_unreachable_server_stops_the_start_with_one_clear_line() -> None:
    def refuse(config: McpServerConfig, stack: AsyncExitStack) -> Client:
        raise OSError("connection refused")

    bridge = McpBridge([config(connect_timeout_s=0.3)], client_factory=refuse)
    with pytest.raises(RegistryError, match=r"cannot connect.*connection refused"):
        await bridge.start(ToolRegistry())


async def test_a_call_while_disconnected_is_transient() -> None:
    conn = McpConnection(config())
    with pytest.raises(TransientToolError, match="not connected"):
        await conn.call("add", {"a": 1})


async def test_stdio_and_streamable_http_servers() -> None:
    async with fixture.serve_http() as url:
        registry = ToolRegistry()
        bridge = McpBridge([
            fixture.stdio_config("local", tools=["add"]),
            McpServerConfig(name="remote", transport="http", url=url, tools=["shout"]),
        ])  # fmt: skip
        try:
            assert sorted(await bridge.start(registry)) == ["local__add", "remote__shout"]
            executor = Executor(registry)
            added = await executor.execute(call("local__add", {"a": 1, "b": 1}))
            shouted = await executor.execute(call("remote__shout", {"text": "a", "times": 2}))
        finally:
            await bridge.stop()
    assert added.content == {"result": 2}
    assert shouted.content == {"result": "AA"}
