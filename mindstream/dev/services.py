"""Run the mindstream services as separate local processes (demo, benchmarks, fault tests).

Each service is started the one way services start -- ``mindstream serve
<name>`` -- with its environment, its own log file and a pid file, and is
ready when its ``/readyz`` answers 200. Stopping sends SIGTERM (the graceful
path Kubernetes uses) and SIGKILL only after a timeout.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mindstream.dev import process
from mindstream.dev.errors import DevError

SERVICES: tuple[str, ...] = ("memory", "reasoning", "tools", "telemetry", "control-plane",
                             "workflows")
# Probe/metrics ports. The control plane also serves its API and dashboard on 8080.
DEFAULT_PORTS: Mapping[str, int] = {
    "reasoning": 8081, "tools": 8082, "memory": 8083, "telemetry": 8084, "control-plane": 8085,
    "workflows": 8086,
}
CONTROL_PLANE_API_PORT = 8080


@dataclass(frozen=True)
class ServiceProcess:
    name: str
    port: int
    tracked: process.Tracked
    instance: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def port_env_var(name: str) -> str:
    """The setting of the port answering /readyz and /metrics."""
    field = "PROBE_PORT" if name == "control-plane" else "HTTP_PORT"
    return f"MINDSTREAM_{name.upper().replace('-', '_')}_{field}"


def probe_port_of(name: str, env: Mapping[str, str]) -> int:
    return int(env.get(port_env_var(name), DEFAULT_PORTS[name]))


def start(name: str, *, env: Mapping[str, str], run_dir: Path, log_dir: Path,
          instance: str | None = None, die_with_parent: bool = False) -> ServiceProcess:
    instance = instance or name
    full_env = {**os.environ, **env}
    existing = process.read(run_dir, f"svc-{instance}")
    if process.alive(existing):
        raise DevError(f"service {instance} is already running (pid {existing.pid if existing else '?'}); "
                       "stop it first (`mindstream demo --stop`)")
    port = probe_port_of(name, full_env)
    if process.port_open("127.0.0.1", port):
        raise DevError(f"port {port} for {instance} is in use by another process; stop it or set "
                       f"{port_env_var(name)}")
    tracked = process.spawn(
        f"svc-{instance}", [sys.executable, "-m", "mindstream.cli.main", "serve", name],
        run_dir=run_dir, log=log_dir / f"{instance}.log", cwd=Path.cwd(), env=full_env,
        die_with_parent=die_with_parent,
    )
    return ServiceProcess(name, port, tracked, instance)


def ready(service: ServiceProcess) -> bool:
    try:
        with urllib.request.urlopen(f"{service.url}/readyz", timeout=1) as response:  # noqa: S310
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def wait_ready(services: Sequence[ServiceProcess], timeout_s: float = 60.0) -> None:
    for service in services:
        ok = process.wait_for(lambda s=service: ready(s) or not process.alive(s.tracked),  # type: ignore[misc]
                              timeout_s, 0.25)
        if not ok or not process.alive(service.tracked):
            raise DevError(f"service {service.instance} did not become ready within {timeout_s:.0f}s; "
                           f"last lines of {service.tracked.log}:\n"
                           f"{process.log_tail(service.tracked.log)}")


def stop(service: ServiceProcess, run_dir: Path, timeout_s: float = 30.0) -> bool:
    return process.stop(run_dir, f"svc-{service.instance}", timeout_s=timeout_s)


def kill(service: ServiceProcess) -> None:
    """SIGKILL: the crash a fault-injection test wants, no goodbye."""
    import signal

    if process.alive(service.tracked):
        os.kill(service.tracked.pid, signal.SIGKILL)
        process.wait_for(lambda: not process.alive(service.tracked), 10)
