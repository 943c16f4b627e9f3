"""The child side of :mod:`services.tools.sandbox`: limit, run, reply, exit.

Limits are set first, before anything heavy is imported, so the tool's
module and everything it imports run under them. Reads one JSON request on
stdin, writes one JSON reply on the original stdout.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from typing import Any


def _limit(cpu_seconds: int, memory_mb: int) -> None:
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    mem = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _run(request: dict[str, Any]) -> Any:
    import asyncio
    import importlib
    import inspect

    from pydantic_core import to_jsonable_python

    from services.tools.registry import spec_of

    module_name, _, qualname = str(request["tool"]).partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    spec = spec_of(obj)
    args = spec.params_model.model_validate(request["arguments"])
    kwargs = {name: getattr(args, name) for name in type(args).model_fields}
    result = spec.fn(**kwargs)
    if inspect.isawaitable(result):
        result = asyncio.run(_await(result))
    return to_jsonable_python(result)


async def _await(awaitable: Any) -> Any:
    return await awaitable


def main() -> int:
    reply_fd = os.dup(1)
    os.dup2(2, 1)  # the tool's prints go to stderr and cannot forge a reply
    sys.stdout = sys.stderr
    try:
        request = json.loads(sys.stdin.buffer.read())
        limits = request.get("limits", {})
        _limit(int(limits.get("cpu_seconds", 5)), int(limits.get("memory_mb", 512)))
        reply: dict[str, Any] = {"ok": True, "content": _run(request)}
    except MemoryError:
        reply = {"ok": False, "code": "resource_limit", "message": "ran out of memory"}
    except Exception as exc:
        from services.tools.errors import ToolError

        code = exc.code.value if isinstance(exc, ToolError) else "internal_error"
        message = str(exc) if isinstance(exc, ToolError) else f"{type(exc).__name__}: {exc}"
        reply = {"ok": False, "code": code, "message": message}
    with os.fdopen(reply_fd, "w", encoding="utf-8") as out:
        out.write(json.dumps(reply))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
