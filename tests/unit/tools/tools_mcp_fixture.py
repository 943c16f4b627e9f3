"""A tiny MCP server for the bridge tests: in process, over stdio, or over streamable HTTP.

``python -m tests.unit.tools.tools_mcp_fixture`` serves it on stdio (run
from the repository root). :func:`serve_http` serves it on 127.0.0.1 with a
port the OS picks, inside the test's event loop.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from mcp.server.mcpserver import MCPServer

from services.tools.settings import McpServerConfig

REPO_ROOT = Path(__file__).resolve().parents[3]

app = MCPServer("fixture")


@app.tool()
def add(a: int, b: int = 2) -> int:
    """Add two integers."""
    return a + b


@app.tool()
def shout(text: str, times: int | None = None) -> str:
    """Upper-case a text, optionally repeated."""
    return text.upper() * (times or 1)


@app.tool()
def refuse(reason: str) -> str:
    """Always fails with the given reason."""
    raise ValueError(reason)


@app.tool(name="weird.name")
def weird_name(value: str) -> str:
    """A tool whose name is outside the tool-name alphabet."""
    return value


def stdio_config(name: str = "fixture", **extra: object) -> McpServerConfig:
    return McpServerConfig.model_validate({
        "name": name, "transport": "stdio", "command": sys.executable,
        "args": ["-m", "tests.unit.tools.tools_mcp_fixture"], "cwd": str(REPO_ROOT),
        "connect_timeout_s": 30, **extra,
    })  # fmt: skip


@asynccontextmanager
async def serve_http() -> AsyncIterator[str]:
    """Serve :data:`app` over streamable HTTP; yields its URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app.streamable_http_app(), log_level="warning",
                                           lifespan="on"))  # fmt: skip
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        server.should_exit = True
        await task
        sock.close()


if __name__ == "__main__":
    app.run("stdio")
