"""Sandboxed tools for the sandbox tests; module-level so the child can import them."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from services.tools.errors import ToolFailedError, TransientToolError
from services.tools.registry import SandboxLimits, tool

SMALL = SandboxLimits(cpu_seconds=1, memory_mb=256, max_output_bytes=2048)


@tool(sandbox=True)
def double(x: int) -> dict[str, int]:
    """Double a number, noisily."""
    print("this print must not corrupt the reply")
    return {"result": 2 * x, "pid": os.getpid()}


@tool(sandbox=True)
async def async_double(x: int) -> int:
    """Double a number, asynchronously."""
    await asyncio.sleep(0)
    return 2 * x


@tool(sandbox=True)
def hard_exit() -> None:
    """Die without a word."""
    os._exit(3)


@tool(sandbox=SMALL)
def hog_memory() -> int:
    """Allocate far more than allowed."""
    block = bytearray(1024 * 1024 * 1024)
    return len(block)


@tool(sandbox=SMALL)
def spin() -> None:
    """Burn CPU forever."""
    while True:
        pass


@tool(sandbox=SMALL)
def chatty() -> str:
    """Reply with more than the output limit."""
    return "x" * 10_000


@tool(sandbox=True)
def sleep_forever(pid_file: str) -> None:
    """Record the pid, then hang."""
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(3600)


@tool(sandbox=True)
def environment() -> dict[str, str]:
    """Show the environment the tool sees."""
    return dict(os.environ)


@tool(sandbox=True, retry=__import__("shared.resilience").resilience.RetryPolicy(3, 0.0, 0.0))
def flaky(marker_dir: str) -> str:
    """Fail twice with a transient error, then succeed."""
    attempts = len(os.listdir(marker_dir))
    Path(marker_dir, f"attempt-{attempts}").touch()
    if attempts < 2:
        raise TransientToolError(f"not yet ({attempts})")
    return "third time lucky"


@tool(sandbox=True)
def refuse() -> None:
    """Refuse with a reason."""
    raise ToolFailedError("bad input: try a smaller number")


@tool(sandbox=True)
def buggy() -> None:
    """Raise an unexpected error."""
    raise KeyError("oops")
