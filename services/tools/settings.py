"""Settings of the tools service (env prefix ``MINDSTREAM_TOOLS_``).

Lists and mappings are JSON in the environment, e.g.::

    MINDSTREAM_TOOLS_MODULES='["services.tools.builtins.calculator", "acme.tools"]'
    MINDSTREAM_TOOLS_MODULE_CONFIG='{"http_fetch": {"allowed_hosts": ["example.com"]}}'
    MINDSTREAM_TOOLS_MCP_SERVERS='[{"name": "files", "transport": "stdio",
                                    "command": "mcp-files", "tools": ["read_*"]}]'

``MODULES`` also takes a comma-separated list. A key of ``MODULE_CONFIG``
may be a module's full name or its last segment (``http_fetch``).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from schemas.tools import MAX_INLINE_CONTENT_BYTES
from services.tools.builtins import BUILTIN_MODULES

__all__ = ["McpServerConfig", "ToolsSettings"]


class McpServerConfig(BaseModel):
    """One MCP server whose tools join the registry.

    Its tools are registered as ``<prefix>__<tool>`` (``prefix`` defaults to
    ``name``), so they match the tool-name alphabet and never collide with
    local tools. ``tools`` limits which of the server's tools are offered:
    exact names, or a prefix ending in ``*``; unset offers all of them. An
    agent still needs each registered name on its own allowlist.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")
    transport: Literal["stdio", "http"]
    command: str | None = Field(default=None, min_length=1)
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(
        default_factory=dict,
        description="the server's whole environment besides a minimal default (stdio only)",
    )
    cwd: str | None = None
    url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    headers: dict[str, str] = Field(default_factory=dict)
    tools: list[str] | None = None
    prefix: str | None = Field(default=None, pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")
    timeout_s: float = Field(default=30.0, gt=0, le=3600)
    connect_timeout_s: float = Field(default=20.0, gt=0, le=600)
    max_concurrency: int = Field(default=8, ge=1, le=1024)
    idempotent: bool = Field(
        default=False,
        description="re-run a call interrupted by a crash; the tool's own idempotentHint wins",
    )

    @model_validator(mode="after")
    def _transport_fields(self) -> McpServerConfig:
        if self.transport == "stdio" and not self.command:
            raise ValueError(f"MCP server {self.name!r}: stdio transport needs 'command'")
        if self.transport == "http" and not self.url:
            raise ValueError(f"MCP server {self.name!r}: http transport needs 'url'")
        return self

    @property
    def tool_prefix(self) -> str:
        return self.prefix or self.name

    def offers(self, tool_name: str) -> bool:
        if self.tools is None:
            return True
        return any(
            tool_name.startswith(p[:-1]) if p.endswith("*") else tool_name == p
            for p in self.tools
        )


class ToolsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MINDSTREAM_TOOLS_", extra="ignore")

    http_port: int = Field(default=8082, ge=0, le=65535)
    modules: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(BUILTIN_MODULES))
    module_config: dict[str, dict[str, Any]] = Field(default_factory=dict)
    consumer_group: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9._-]{1,200}$",
        description="consumer group of the calls consumer; default <prefix>mindstream-tools.tools-calls",
    )
    global_concurrency: int = Field(default=64, ge=1, le=10_000)
    consumer_concurrency: int = Field(
        default=3, ge=1, le=64, description="group members in this process (partitions in parallel)"
    )
    inline_result_limit: int = Field(
        default=64 * 1024,
        ge=1024,
        le=MAX_INLINE_CONTENT_BYTES,
        description="results larger than this (JSON bytes) are stored and sent by reference",
    )
    max_result_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=1024,
        le=15 * 1024 * 1024,  # a MongoDB document holds 16 MiB
        description="larger results are refused with an error result",
    )
    breaker_failure_threshold: int = Field(default=5, ge=1, le=1000)
    breaker_reset_s: float = Field(default=30.0, gt=0, le=3600)
    agents_load_timeout_s: float = Field(default=30.0, gt=0, le=600)
    mcp_servers: list[McpServerConfig] = Field(default_factory=list)

    @field_validator("modules", mode="before")
    @classmethod
    def _split_modules(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [m.strip() for m in text.split(",") if m.strip()]
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ToolsSettings:
        names = [s.name for s in self.mcp_servers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate MCP server names: {', '.join(dupes)}")
        if self.inline_result_limit > self.max_result_bytes:
            raise ValueError("inline_result_limit must not exceed max_result_bytes")
        for key in self.module_config:
            if not self._modules_for(key):
                raise ValueError(f"module_config names {key!r}, which is not in modules")
        return self

    def _modules_for(self, key: str) -> list[str]:
        return [m for m in self.modules if m == key or m.rsplit(".", 1)[-1] == key]

    def config_by_module(self) -> dict[str, dict[str, Any]]:
        """``module_config`` keyed by full module name (short keys resolved)."""
        out: dict[str, dict[str, Any]] = {}
        for key, value in self.module_config.items():
            for module in self._modules_for(key):
                out[module] = {**out.get(module, {}), **value}
        return out
