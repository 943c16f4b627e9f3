"""The benchmark's tool: ``noop`` returns at once, so a tool round trip measures mindstream.

Both the tools service (``MINDSTREAM_TOOLS_MODULES``) and the reasoning service
(``MINDSTREAM_REASONING_TOOL_MODULES``, for the schema the model is offered) load
this module during a bench run only; it is not a built-in.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from services.tools.registry import tool

__all__ = ["TOOLS", "noop"]

MODULE = "mindstream.bench.tools"


@tool(timeout_s=5.0, max_concurrency=1024)
def noop(
    value: Annotated[str, Field(description="echoed back unchanged", max_length=256)] = "",
) -> dict[str, str]:
    """Return the value unchanged (benchmarks: a tool call that costs nothing)."""
    return {"value": value}


TOOLS = [noop]
