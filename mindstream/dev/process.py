"""Start and stop our own background processes, tracked by pid file.

``dev down`` must stop exactly what ``dev up`` started and never a stranger
that happens to share a name, so a pid file records the pid together with the
process start time from /proc; a recycled pid fails that check.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Tracked:
    name: str
    pid: int
    start_ticks: int
    log: Path


def _start_ticks(pid: int) -> int | None:
    """The process start time in clock ticks since boot (field 22 of /proc/pid/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parens; fields resume after the last ')'.
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z" and _threads_left(pid) <= 1:
        # A zombie is as good as dead once its other threads are gone too: a JVM's
        # leader turns Z while its threads still hold its sockets and files.
        return None
    return int(fields[19])


def pid_file(run_dir: Path, name: str) -> Path:
    return run_dir / f"{name}.pid.json"


def read(run_dir: Path, name: str) -> Tracked | None:
    path = pid_file(run_dir, name)
    try:
        raw = json.loads(path.read_text())
        return Tracked(name, int(raw["pid"]), int(raw["start_ticks"]), Path(raw["log"]))
    except (OSError, ValueError, KeyError):
        return None


def _threads_left(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


def alive(tracked: Tracked | None) -> bool:
    return tracked is not None and _start_ticks(tracked.pid) == tracked.start_ticks


def _raise_open_files_limit() -> None:
    """A broker keeps several files open per partition; allow as many as the hard limit."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1_048_576
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def die_with_parent() -> None:
    """Linux: SIGKILL this child when the thread that spawned it ends, so a test
    run killed mid-way leaves no services behind writing to the shared broker."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


_PR_SET_PDEATHSIG = 1


def _preexec(max_open_files: bool, with_parent: bool) -> Callable[[], None] | None:
    steps = [f for f, on in ((_raise_open_files_limit, max_open_files),
                             (die_with_parent, with_parent and sys.platform == "linux")) if on]
    if not steps:
        return None

    def run() -> None:
        for step in steps:
            step()
    return run


def spawn(name: str, argv: Sequence[str], *, run_dir: Path, log: Path, cwd: Path,
          env: dict[str, str] | None = None, max_open_files: bool = False,
          die_with_parent: bool = False) -> Tracked:
    """Start ``argv`` detached from our session, output appended to ``log``.

    ``die_with_parent`` is for stacks owned by one test process (call it from
    the thread that lives as long as the stack); ``mindstream dev up``'s
    processes must outlive the command and do not use it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=cwd, env=env, start_new_session=True,
            preexec_fn=_preexec(max_open_files, die_with_parent),  # noqa: PLW1509
        )
    ticks = _start_ticks(proc.pid)
    tracked = Tracked(name, proc.pid, ticks or 0, log)
    pid_file(run_dir, name).write_text(json.dumps(
        {"pid": proc.pid, "start_ticks": tracked.start_ticks, "log": str(log), "argv": list(argv)}
    ))
    return tracked


def stop(run_dir: Path, name: str, *, timeout_s: float = 30.0) -> bool:
    """Stop the recorded process (SIGTERM, then SIGKILL). True if one was running."""
    tracked = read(run_dir, name)
    was_alive = alive(tracked)
    if tracked is not None and was_alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(tracked.pid, signal.SIGTERM)
        if not wait_for(lambda: not alive(tracked), timeout_s):
            with contextlib.suppress(ProcessLookupError):
                os.kill(tracked.pid, signal.SIGKILL)
            wait_for(lambda: not alive(tracked), 5.0)
    pid_file(run_dir, name).unlink(missing_ok=True)
    return was_alive


def wait_for(condition: Callable[[], bool], timeout_s: float, interval_s: float = 0.2) -> bool:
    """Poll ``condition`` until true or the timeout passes (for external processes
    there is no event to await)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)


def port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def log_tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port(host: str = "127.0.0.1") -> int:
    """A port to hand to a process that binds it moments later.

    Chosen below the kernel's ephemeral range: a port the OS picked with
    ``bind(0)`` is an ephemeral one, and any outgoing connection (a Kafka or
    MongoDB client) may take it before the service binds it; below the range
    only another listener can, and the port is checked free now.
    """
    low, _high = _ephemeral_range()
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(20000, low) if low > 21000 else rng.randrange(low // 2, low)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    raise OSError("no free port found below the ephemeral range")
