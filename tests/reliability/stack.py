"""The system under test: the scripted model and every service, each its own process.

One :class:`Stack` owns a unique topic prefix and database on some Kafka and
MongoDB-wire server (the shared dev ones, or a private pair for the
infrastructure scenario), starts services the one way they start
(``mindstream serve <name>``, via :mod:`mindstream.dev.services`), and can
kill -9, restart and add replicas of any of them while load runs. Every
instance gets fresh ports, so a restarted or second replica never collides.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from aiokafka import AIOKafkaProducer

from mindstream.dev import process, services
from mindstream.dev.process import free_port
from schemas.agents import AgentDefinition
from schemas.base import Message
from schemas.codec import encode
from schemas.envelope import Envelope
from schemas.topics import AGENTS, TOPICS, WORKFLOWS, TopicSpec
from schemas.workflows import WorkflowDefinition
from services.tools.builtins import BUILTIN_MODULES
from shared.kafka.admin import apply_topics
from shared.settings import KafkaSettings
from tests.reliability.side_effect_tools import MODULE as TEST_TOOLS

__all__ = ["CORE_SERVICES", "Stack", "StackSpec"]

REPO_ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "script.yaml"
AGENTS_FILE = HERE / "agents.yaml"
WORKFLOWS_FILE = HERE / "workflows.yaml"
CORE_SERVICES: tuple[str, ...] = ("memory", "reasoning", "tools", "telemetry", "control-plane",
                                  "workflows")
PARTITIONS = 6



@dataclass(frozen=True)
class StackSpec:
    kafka_bootstrap: str
    mongo_uri: str
    work_dir: Path
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @property
    def prefix(self) -> str:
        return f"rel{self.tag}."

    @property
    def database(self) -> str:
        return f"rel_{self.tag}"


class ModelServer:
    """The scripted OpenAI-compatible server as its own process; re-scripted over HTTP."""

    def __init__(self, log: Path) -> None:
        self._log = log
        self.proc: subprocess.Popen[str] | None = None
        self.root_url = ""

    def start(self) -> None:
        with self._log.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mindstream.testing.scripted_model", "--script", str(SCRIPT),
                 "--host", "127.0.0.1", "--port", "0"],
                stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True,
                preexec_fn=process.die_with_parent)  # noqa: PLW1509
        assert self.proc.stdout is not None
        match = re.search(r"listening on (http://\S+)", self.proc.stdout.readline())
        if match is None:
            self.stop()
            raise RuntimeError(f"scripted model did not start; see {self._log}")
        self.root_url = match.group(1)

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    async def set_script(self, rules: list[dict[str, Any]] | None = None) -> None:
        """Replace the script (``None`` restores the suite's base script)."""
        text = SCRIPT.read_text() if rules is None else yaml.safe_dump(
            {"models": ["scripted"], "rules": rules + base_rules()})
        async with httpx.AsyncClient(timeout=10) as http:
            answer = await http.post(f"{self.root_url}/_script", content=text.encode())
            answer.raise_for_status()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None


def base_rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = yaml.safe_load(SCRIPT.read_text())["rules"]
    return rules


@dataclass
class Instance:
    name: str
    instance: str
    extra_env: dict[str, str]
    proc: services.ServiceProcess | None = None
    api_port: int | None = None


class Stack:
    def __init__(self, spec: StackSpec, *, extra_env: Mapping[str, str] | None = None) -> None:
        self.spec = spec
        self.run_dir = spec.work_dir / "run"
        self.log_dir = spec.work_dir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.effects_path = spec.work_dir / "effects.log"
        self.model = ModelServer(self.log_dir / "scripted-model.log")
        self.token = f"ms_rel_{uuid.uuid4().hex}{uuid.uuid4().hex}"
        self.instances: dict[str, Instance] = {}
        self._extra_env = dict(extra_env or {})

    # -- configuration ------------------------------------------------------------------

    @property
    def kafka(self) -> KafkaSettings:
        return KafkaSettings(bootstrap_servers=self.spec.kafka_bootstrap,
                             MINDSTREAM_TOPIC_PREFIX=self.spec.prefix)

    def env(self) -> dict[str, str]:
        modules = [*BUILTIN_MODULES, TEST_TOOLS]
        return {
            "PYTHONPATH": str(REPO_ROOT),
            "PYTHONUNBUFFERED": "1",
            "KAFKA_BOOTSTRAP_SERVERS": self.spec.kafka_bootstrap,
            "MONGODB_URI": self.spec.mongo_uri,
            "MINDSTREAM_TOPIC_PREFIX": self.spec.prefix,
            "MINDSTREAM_DB": self.spec.database,
            # MINDSTREAM_RELIABILITY_LOG_LEVEL=INFO to see what each service did (logs/ of the run).
            "MINDSTREAM_LOG_LEVEL": os.environ.get("MINDSTREAM_RELIABILITY_LOG_LEVEL", "WARNING"),
            "MINDSTREAM_MODEL_BASE_URL": self.model.base_url,
            "OPENAI_API_KEY": "scripted",
            "MINDSTREAM_CONTROL_PLANE_BOOTSTRAP_TOKEN": self.token,
            "MINDSTREAM_TOOLS_MODULES": json.dumps(modules),
            "MINDSTREAM_TOOLS_MODULE_CONFIG": json.dumps({
                TEST_TOOLS: {"effects_path": str(self.effects_path)},
                "services.tools.builtins.http_fetch": {
                    # On the allowlist, so the address check is what refuses them.
                    "allowed_hosts": ["127.0.0.1", "localhost", "169.254.169.254"],
                    "private_hosts": [], "timeout_s": 3.0},
            }),
            "MINDSTREAM_REASONING_TOOL_MODULES": json.dumps(modules),
            # Failures show within a scenario's time box: a stalled model is cut at 8 s,
            # an open breaker half-opens after 5 s.
            "MINDSTREAM_REASONING_MODEL_CALL_TIMEOUT_S": "8",
            "MINDSTREAM_REASONING_MODEL_TOTAL_TIMEOUT_S": "20",
            "MINDSTREAM_REASONING_MODEL_BREAKER_RESET_S": "5",
            "MINDSTREAM_TELEMETRY_LAG_POLL_INTERVAL_S": "5",
            **self._extra_env,
        }

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self, replicas: Mapping[str, int] | None = None) -> None:
        self.model.start()
        await apply_topics(self.kafka, TOPICS, prefix=self.spec.prefix, max_partitions=PARTITIONS)
        await self.publish_agents()
        replicas = replicas or {}
        started = []
        for name in CORE_SERVICES:
            for i in range(replicas.get(name, 1)):
                started.append(self.add(name, f"{name}-{i + 1}"))
        await self.wait_ready(started)

    async def publish_agents(self) -> None:
        """The suite's agents and workflows, version 1, on the stack's own topics."""
        for spec, model, path in ((AGENTS, AgentDefinition, AGENTS_FILE),
                                  (WORKFLOWS, WorkflowDefinition, WORKFLOWS_FILE)):
            await self.publish(spec, [model.model_validate({"version": 1, **raw})
                                      for raw in yaml.safe_load(path.read_text())])

    async def publish(self, spec: TopicSpec, messages: Sequence[Message]) -> None:
        """Publish as a user's own producer would: acks=all, idempotent, keyed by the
        topic's key, in order."""
        producer = AIOKafkaProducer(bootstrap_servers=self.spec.kafka_bootstrap, acks="all",
                                    enable_idempotence=True)
        await producer.start()
        try:
            for message in messages:
                env = Envelope.new(message, source="tests/reliability")
                await producer.send_and_wait(spec.physical(self.spec.prefix), encode(message),
                                             key=spec.key_of(message), headers=env.to_headers())
        finally:
            await producer.stop()

    def add(self, name: str, instance: str, extra_env: Mapping[str, str] | None = None) -> str:
        """Start one instance (not waiting for it); returns its instance name."""
        inst = self.instances.get(instance) or Instance(name, instance, dict(extra_env or {}))
        self.instances[instance] = inst
        env = {**self.env(), **inst.extra_env, services.port_env_var(name): str(free_port())}
        if name == "control-plane":
            inst.api_port = free_port()
            env["MINDSTREAM_CONTROL_PLANE_HTTP_PORT"] = str(inst.api_port)
        inst.proc = services.start(name, env=env, run_dir=self.run_dir, log_dir=self.log_dir,
                                   instance=instance, die_with_parent=True)
        return instance

    async def wait_ready(self, instances: list[str], timeout_s: float = 120.0) -> None:
        procs = [p for i in instances if (p := self.instances[i].proc) is not None]
        await asyncio.to_thread(services.wait_ready, procs, timeout_s)

    def kill(self, instance: str) -> None:
        """SIGKILL: no goodbye, no commit, no leaving the consumer group."""
        proc = self.instances[instance].proc
        assert proc is not None
        services.kill(proc)

    async def restart(self, instance: str) -> float:
        """Start a killed or stopped instance again; returns seconds until it was ready."""
        started = time.monotonic()
        self.add(self.instances[instance].name, instance)
        await self.wait_ready([instance])
        return time.monotonic() - started

    async def stop_instance(self, instance: str) -> None:
        proc = self.instances[instance].proc
        if proc is not None:
            await asyncio.to_thread(services.stop, proc, self.run_dir, 30.0)

    async def remove(self, instance: str) -> None:
        await self.stop_instance(instance)
        del self.instances[instance]

    def dead(self) -> list[str]:
        return [i for i, inst in self.instances.items()
                if inst.proc is not None and not process.alive(inst.proc.tracked)]

    def of(self, name: str) -> list[str]:
        return [i for i, inst in self.instances.items() if inst.name == name]

    @property
    def api_url(self) -> str:
        port = next(inst.api_port for inst in self.instances.values() if inst.api_port)
        return f"http://127.0.0.1:{port}"

    def log_tails(self, lines: int = 25) -> str:
        out = []
        for inst in self.instances.values():
            if inst.proc is not None:
                out.append(f"--- {inst.instance} ---\n{process.log_tail(inst.proc.tracked.log, lines)}")
        return "\n".join(out)

    def stop(self) -> None:
        """Stop everything: SIGTERM to all at once, SIGKILL to what is left after 15 s.

        Synchronous on purpose: a teardown that a cancellation can interrupt leaves
        processes behind (a service whose broker is gone may never finish a graceful stop).
        """
        tracked = [inst.proc.tracked for inst in self.instances.values()
                   if inst.proc is not None and process.alive(inst.proc.tracked)]
        for t in tracked:
            with contextlib.suppress(ProcessLookupError):
                os.kill(t.pid, signal.SIGTERM)
        process.wait_for(lambda: not any(process.alive(t) for t in tracked), 15.0)
        for t in tracked:
            if process.alive(t):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(t.pid, signal.SIGKILL)
        process.wait_for(lambda: not any(process.alive(t) for t in tracked), 5.0)
        for inst in self.instances.values():
            process.pid_file(self.run_dir, f"svc-{inst.instance}").unlink(missing_ok=True)
        self.model.stop()
