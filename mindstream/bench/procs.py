"""Memory and CPU of processes, from /proc (no psutil needed).

``VmRSS`` is the resident set of a process; CPU time is ``utime + stime``
from ``/proc/<pid>/stat`` in clock ticks. Machine-wide busy time comes from
``/proc/stat``, so the report can say how much CPU went to processes that are
not part of the bench (other work on the machine skews every figure).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CpuSample",
    "cpu_ms_per_run",
    "cpu_seconds",
    "machine_busy_seconds",
    "net_of_idle",
    "parse_vmrss_kib",
    "rss_mib",
    "usage_between",
]

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def parse_vmrss_kib(status_text: str) -> int | None:
    """The ``VmRSS`` figure (KiB) of a /proc/<pid>/status text; None if absent (a zombie)."""
    for line in status_text.splitlines():
        if line.startswith("VmRSS:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1])
    return None


def rss_mib(pid: int) -> float | None:
    try:
        kib = parse_vmrss_kib(Path(f"/proc/{pid}/status").read_text())
    except OSError:
        return None
    return None if kib is None else kib / 1024


def parse_cpu_ticks(stat_text: str) -> int:
    """``utime + stime`` of a /proc/<pid>/stat text (fields after the command name)."""
    fields = stat_text.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def cpu_seconds(pid: int) -> float | None:
    try:
        return parse_cpu_ticks(Path(f"/proc/{pid}/stat").read_text()) / _TICKS
    except (OSError, IndexError, ValueError):
        return None


def parse_machine_busy(stat_text: str) -> tuple[float, float]:
    """(busy, total) ticks from the ``cpu`` line of /proc/stat."""
    for line in stat_text.splitlines():
        if line.startswith("cpu "):
            values = [int(v) for v in line.split()[1:]]
            idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
            total = sum(values[:8])  # guest time is already inside user
            return float(total - idle), float(total)
    raise ValueError("no cpu line in /proc/stat")


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores together."""
    try:
        busy, total = parse_machine_busy(Path("/proc/stat").read_text())
    except (OSError, ValueError):
        return 0.0, 0.0
    return busy / _TICKS, total / _TICKS


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds of named processes and of the machine at one moment."""

    at: float
    per_process: Mapping[str, float]
    machine_busy: float

    @classmethod
    def take(cls, pids: Mapping[str, int], at: float) -> CpuSample:
        found = {name: s for name, pid in pids.items() if (s := cpu_seconds(pid)) is not None}
        return cls(at, found, machine_busy_seconds()[0])


def usage_between(a: CpuSample, b: CpuSample) -> dict[str, float]:
    """Per-process CPU use between two samples, in cores (1.0 = one core busy),
    plus ``machine`` and ``other`` (busy time of every process not named)."""
    elapsed = b.at - a.at
    if elapsed <= 0:
        return {}
    used = {name: max(0.0, (b.per_process[name] - a.per_process[name]) / elapsed)
            for name in b.per_process if name in a.per_process}
    machine = max(0.0, (b.machine_busy - a.machine_busy) / elapsed)
    used["machine"] = machine
    used["other"] = max(0.0, machine - sum(v for k, v in used.items() if k != "machine"))
    return used


def cpu_ms_per_run(a: CpuSample, b: CpuSample, runs: int,
                   exclude: frozenset[str] = frozenset({"bench-client"})) -> dict[str, float]:
    """CPU milliseconds each process spent per run between two samples, and their
    ``total`` (without ``exclude``: the load generator is not the system).

    Unlike latency, this hardly depends on what else the machine runs, so it
    tells the capacity of a machine: about ``cores * 1000 / total`` runs/s.
    """
    if runs <= 0:
        return {}
    used = {name: (b.per_process[name] - a.per_process[name]) * 1000 / runs
            for name in b.per_process if name in a.per_process}
    used["total"] = sum(v for k, v in used.items() if k not in exclude)
    return {k: round(max(0.0, v), 2) for k, v in used.items()}


def net_of_idle(per_run_ms: Mapping[str, float], idle_cores: Mapping[str, float], elapsed_s: float,
                runs: int, exclude: frozenset[str] = frozenset({"bench-client"})) -> dict[str, float]:
    """``per_run_ms`` less what each process burns anyway (its idle cores over the same
    time, shared among the runs), with a new ``total``."""
    if runs <= 0:
        return {}
    net = {name: max(0.0, ms - idle_cores.get(name, 0.0) * elapsed_s * 1000 / runs)
           for name, ms in per_run_ms.items() if name != "total"}
    net["total"] = sum(v for k, v in net.items() if k not in exclude)
    return {k: round(v, 2) for k, v in net.items()}
