"""The whole system, started once for a test module: ``with running_stack(infra, tmp) as s``.

It is :func:`mindstream.demo.stack.start` (infrastructure check, scripted
model, topics, agents, knowledge, every service its own process) without the
story, made safe to run beside other tests:

- free ports for every service, a unique topic prefix and a unique database;
- its own run and log directory (``tmp``), so its pid files never collide
  with ``mindstream demo`` or another test's stack;
- ``start()`` takes its settings from ``os.environ``, so the environment is
  set for the start and restored right after it -- the services keep the
  environment they were started with, the test process gets its own back.

``stack.env`` is what a client process needs to reach this stack (bootstrap
servers, topic prefix, database); pass it to example subprocesses.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mindstream.demo.stack import DemoStack, start
from mindstream.dev import DevSettings
from mindstream.dev.process import free_port
from mindstream.dev.services import SERVICES, port_env_var
from tests.infra import Infra, delete_topics_with_prefix

__all__ = ["RunningStack", "free_port", "running_stack"]

_MODEL_VARS = ("MINDSTREAM_MODEL_BASE_URL", "OPENAI_API_KEY")




@dataclass(frozen=True)
class RunningStack:
    demo: DemoStack
    env: dict[str, str]
    """The full environment for a client subprocess (``os.environ`` plus this stack)."""
    bootstrap: str
    prefix: str
    api_url: str
    token: str
    log_dir: Path

    def topic(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def log_tail(self, lines: int = 40) -> str:
        """The end of every service log, for a failing assertion's message."""
        out = []
        for log in sorted(self.log_dir.glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {log.name}\n" + "\n".join(tail))
        return "\n".join(out)


@contextlib.contextmanager
def _environ(values: dict[str, str], removed: tuple[str, ...]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(values)
    for name in removed:
        os.environ.pop(name, None)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def running_stack(infra: Infra, work_dir: Path, *, prefix_stem: str = "ex") -> Iterator[RunningStack]:
    """Start every service against ``infra``; stop them and delete the topics afterwards."""
    prefix = f"{prefix_stem}{uuid.uuid4().hex[:8]}."
    api_port = free_port()
    stack_env = {
        # Both set: `dev up` inside start() uses them and starts nothing itself.
        "KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap,
        "MONGODB_URI": infra.mongo_uri,
        "MINDSTREAM_TOPIC_PREFIX": prefix,
        "MINDSTREAM_DB": f"{prefix_stem}_{uuid.uuid4().hex[:8]}",
        "MINDSTREAM_CONTROL_PLANE_HTTP_PORT": str(api_port),
        **{port_env_var(name): str(free_port()) for name in SERVICES},
    }
    settings = DevSettings(cache_dir=work_dir)
    demo: DemoStack | None = None
    try:
        with _environ(stack_env, _MODEL_VARS):
            demo = start(settings)
        client_env = {**os.environ, **stack_env}
        for name in _MODEL_VARS:
            client_env.pop(name, None)
        yield RunningStack(
            demo=demo, env=client_env, bootstrap=infra.kafka_bootstrap, prefix=prefix,
            api_url=f"http://127.0.0.1:{api_port}", token=demo.token, log_dir=settings.log_dir,
        )
    finally:
        if demo is not None:
            demo.stop()
        asyncio.run(delete_topics_with_prefix(infra.kafka_bootstrap, prefix))
