"""What the figures were measured on: cores, memory, CPU model, versions, background load."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

__all__ = ["cpu_model", "describe", "load_average", "parse_cpu_model", "parse_mem_total_mib"]


def parse_cpu_model(cpuinfo: str) -> str:
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "Hardware") and value.strip():
            return value.strip()
    return "unknown"


def parse_mem_total_mib(meminfo: str) -> int | None:
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return None


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def cpu_model() -> str:
    return parse_cpu_model(_read("/proc/cpuinfo"))


def load_average() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


def _package_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def describe(*, kafka_version: str | None, mongo_build: dict[str, Any]) -> dict[str, Any]:
    """The machine and software the bench ran on, for the results file."""
    ferret = mongo_build.get("ferretdb") or {}
    return {
        "cores": os.cpu_count(),
        "ram_mib": parse_mem_total_mib(_read("/proc/meminfo")),
        "cpu_model": cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "kafka": kafka_version,
        "mongo_wire_server": {
            "version": mongo_build.get("version"),
            "ferretdb": ferret.get("version") if isinstance(ferret, dict) else ferret,
            # False: every query but by _id scans its whole collection (FerretDB on SQLite).
            "indexed_queries": mongo_build.get("indexed_queries"),
        },
        "libraries": {n: _package_version(n) for n in ("aiokafka", "faststream", "pymongo", "pydantic")},
        "load_average_at_start": load_average(),
    }
