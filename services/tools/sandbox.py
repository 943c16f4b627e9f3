"""Run an untrusted or fragile tool in a throwaway subprocess.

A tool marked ``sandbox=True`` runs in a fresh interpreter
(``python -m services.tools.sandbox_runner``) that limits itself with
``setrlimit`` (CPU seconds, address space, no core dumps) before it imports
the tool. The subprocess gets a minimal environment built from nothing —
never a copy of ours — so API keys, tokens, passwords and database URIs of
the service are not there to leak. Arguments go in as one JSON document on
stdin; the result comes back as one JSON document on stdout (the tool's own
prints are redirected to stderr so they cannot forge a result).

Whatever happens in there — a crash, ``os._exit``, a limit hit, a hang —
becomes a :class:`~services.tools.errors.ToolError` here; the process is
killed (its whole process group) at the deadline and always reaped, so the
service keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
from typing import Any

from pydantic import BaseModel

from services.tools.errors import (
    ErrorCode,
    ResourceLimitError,
    SandboxCrashedError,
    ToolError,
    ToolFailedError,
    ToolTimeoutError,
    TransientToolError,
)
from services.tools.registry import SandboxLimits, ToolSpec

__all__ = ["run_in_sandbox", "sandbox_env"]

RUNNER_MODULE = "services.tools.sandbox_runner"
_STDERR_TAIL = 2000
_ERRORS_BY_CODE: dict[str, type[ToolError]] = {
    ErrorCode.TRANSIENT: TransientToolError,
    ErrorCode.TOOL_FAILED: ToolFailedError,
    ErrorCode.RESOURCE_LIMIT: ResourceLimitError,
}


def sandbox_env() -> dict[str, str]:
    """The whole environment of a sandboxed tool: only what Python needs to start.

    ``PYTHONPATH`` carries our own import path (minus the interpreter's
    directories, which it finds by itself) so the child imports the same
    code as the parent. Paths are not secrets; nothing else is passed on.
    """
    own = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    paths = []
    for entry in sys.path:
        if not entry or not os.path.isdir(entry):
            continue
        real = os.path.realpath(entry)
        if any(real == p or real.startswith(p + os.sep) for p in own):
            continue
        paths.append(os.path.abspath(entry))
    return {
        "PATH": os.defpath,
        "LANG": "C.UTF-8",
        "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths)),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONIOENCODING": "utf-8",
        "PYTHONUNBUFFERED": "1",
    }


async def run_in_sandbox(spec: ToolSpec, args: BaseModel, *, timeout_s: float) -> Any:
    """Run ``spec`` on validated ``args`` in a subprocess; return its JSON result."""
    limits = spec.sandbox or SandboxLimits()
    payload = json.dumps(
        {
            "tool": spec.import_path,
            "arguments": args.model_dump(mode="json"),
            "limits": {"cpu_seconds": limits.cpu_seconds, "memory_mb": limits.memory_mb},
        }
    ).encode()
    with tempfile.TemporaryDirectory(prefix="mindstream-sandbox-") as workdir:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            RUNNER_MODULE,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**sandbox_env(), "HOME": workdir, "TMPDIR": workdir},
            cwd=workdir,
            start_new_session=True,  # its own process group, so we can kill all of it
        )
        try:
            async with asyncio.timeout(max(timeout_s, 0.0)):
                out, err = await _communicate(proc, payload, limits.max_output_bytes)
        except TimeoutError:
            raise ToolTimeoutError(
                f"sandboxed tool {spec.name!r} killed at its {timeout_s:.3g}s deadline"
            ) from None
        finally:
            await _kill(proc)
    return _interpret(spec.name, proc.returncode, out, err)


async def _communicate(
    proc: asyncio.subprocess.Process, payload: bytes, max_out: int
) -> tuple[bytes, bytes]:
    assert proc.stdin is not None
    assert proc.stdout is not None
    assert proc.stderr is not None
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        proc.stdin.write(payload)
        await proc.stdin.drain()
        proc.stdin.close()
    out, err, _ = await asyncio.gather(
        _read_bounded(proc.stdout, max_out + 1),
        _read_tail(proc.stderr, _STDERR_TAIL),
        proc.wait(),
    )
    if len(out) > max_out:
        raise ResourceLimitError(f"sandboxed tool wrote more than {max_out} bytes of result")
    return out, err


async def _read_bounded(stream: asyncio.StreamReader, limit: int) -> bytes:
    buf = bytearray()
    while len(buf) < limit:
        chunk = await stream.read(min(65536, limit - len(buf)))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


async def _read_tail(stream: asyncio.StreamReader, keep: int) -> bytes:
    tail = b""
    while chunk := await stream.read(65536):
        tail = (tail + chunk)[-keep:]
    return tail


async def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    await asyncio.shield(proc.wait())


def _interpret(name: str, returncode: int | None, out: bytes, err: bytes) -> Any:
    stderr_tail = err.decode("utf-8", "replace").strip()[-500:]
    if returncode is not None and returncode < 0:
        sig = signal.Signals(-returncode)
        if sig == signal.SIGXCPU:
            raise ResourceLimitError(f"sandboxed tool {name!r} used up its CPU time limit")
        if sig == signal.SIGKILL:
            raise ResourceLimitError(f"sandboxed tool {name!r} was killed (memory or CPU limit)")
        raise SandboxCrashedError(f"sandboxed tool {name!r} died of {sig.name}")
    try:
        reply = json.loads(out)
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        if "MemoryError" in stderr_tail:
            raise ResourceLimitError(f"sandboxed tool {name!r} ran out of memory")
        raise SandboxCrashedError(
            f"sandboxed tool {name!r} exited with code {returncode} without a result"
            + (f": {stderr_tail}" if stderr_tail else "")
        )
    if reply.get("ok") is True:
        return reply.get("content")
    message = str(reply.get("message") or "sandboxed tool failed")
    code = str(reply.get("code") or "")
    if code == ErrorCode.INTERNAL_ERROR:
        raise SandboxCrashedError(f"sandboxed tool {name!r} raised {message}")
    raise _ERRORS_BY_CODE.get(code, SandboxCrashedError)(message)
