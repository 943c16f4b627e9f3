"""``mindstream tools list``: the tool registry as the tools service would build it."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from mindstream.cli.errors import CliError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tools = sub.add_parser("tools", help="inspect the tools the tools service offers")
    tools_sub = tools.add_subparsers(dest="tools_command", metavar="ACTION", required=True)
    lst = tools_sub.add_parser(
        "list", help="print every tool with its parameters (settings from MINDSTREAM_TOOLS_*)")
    lst.add_argument("--json", action="store_true", help="print the rows as JSON")
    lst.add_argument("--no-mcp", action="store_true",
                     help="do not connect to the configured MCP servers")
    lst.set_defaults(handler=_list)


def _list(args: argparse.Namespace) -> int:
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from services.tools.errors import RegistryError
    from services.tools.registry import describe

    try:
        from services.tools.app import build_registry
        from services.tools.settings import ToolsSettings

        settings = ToolsSettings()
        registry = build_registry(settings)
        if settings.mcp_servers and not args.no_mcp:
            asyncio.run(_add_mcp_tools(settings, registry))
    except (ValidationError, SettingsError) as exc:
        raise CliError(f"invalid MINDSTREAM_TOOLS_* settings: {exc}".splitlines()[0]) from exc
    except RegistryError as exc:
        raise CliError(str(exc)) from exc
    rows = describe(registry)
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    for row in rows:
        _print_row(row)
    print(f"{len(rows)} tools")
    return 0


async def _add_mcp_tools(settings: Any, registry: Any) -> None:
    from services.tools.mcp_bridge import McpBridge

    bridge = McpBridge(settings.mcp_servers)
    try:
        await bridge.start(registry)
    finally:
        await bridge.stop()


def _print_row(row: dict[str, Any]) -> None:
    flags = [name for name, on in row["flags"].items() if on]
    limits = f"timeout {row['timeout_s']:g}s, concurrency {row['max_concurrency']}"
    if row["retry_attempts"] > 1:
        limits += f", {row['retry_attempts']} attempts"
    print(f"{row['name']}  ({limits}{'; ' + ', '.join(flags) if flags else ''})")
    print(f"    {row['description']}")
    for p in row["params"]:
        need = "required" if p["required"] else f"default {json.dumps(p['default'])}"
        text = f" - {p['description']}" if p["description"] else ""
        print(f"    {p['name']}: {p['type']} ({need}){text}")
