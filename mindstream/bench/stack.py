"""The system under test: every service its own process, on a bench-only prefix and database.

A bench run never touches the demo's data: its topics carry a unique prefix
(``bench<stamp>.``) and its state a unique database, both removed at the end.
Each *phase* that needs different topics (more partitions for the scaling
phase) gets a fresh prefix and database, and services are restarted onto
them, so no phase inherits another's backlog or consumer offsets.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from mindstream.bench.tools import MODULE as BENCH_TOOLS_MODULE
from mindstream.dev import process, services
from mindstream.dev.errors import DevError
from mindstream.dev.process import free_port
from schemas.topics import TOPICS
from services.tools.builtins import BUILTIN_MODULES
from shared.kafka.admin import planned_topics

__all__ = ["AGENTS_DIR", "SCRIPT", "BenchStack", "Layout", "ModelServer", "free_port"]

BENCH_DIR = Path(__file__).resolve().parent
AGENTS_DIR = BENCH_DIR / "agents"
DB_PROFILE_DIR = BENCH_DIR / "dbprofile"
SCRIPT = BENCH_DIR / "script.yaml"




@dataclass(frozen=True)
class Layout:
    """Where one phase's data lives: topic prefix, database, partitions per session topic."""

    prefix: str
    database: str
    partitions: int
    db_per_service: bool = False  # services get ``<database>_<service>`` each

    @classmethod
    def fresh(cls, stamp: str, phase: str, partitions: int, *, db_per_service: bool = False) -> Layout:
        tag = f"{stamp}{phase}{uuid.uuid4().hex[:4]}"
        return cls(prefix=f"bench{tag}.", database=f"bench_{tag}", partitions=partitions,
                   db_per_service=db_per_service)

    def database_of(self, service: str) -> str:
        """The database ``service`` keeps its collections in on this layout."""
        if not self.db_per_service:
            return self.database
        return f"{self.database}_{re.sub(r'[^A-Za-z0-9]', '', service)}"

    def databases(self) -> list[str]:
        return sorted({self.database, *(self.database_of(s) for s in services.SERVICES)})


@dataclass
class ModelServer:
    """The scripted OpenAI-compatible server as a subprocess (it answers at once)."""

    proc: subprocess.Popen[str]
    base_url: str

    @classmethod
    def start(cls, log: Path, script: Path = SCRIPT) -> ModelServer:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "mindstream.testing.scripted_model", "--script", str(script),
                 "--host", "127.0.0.1", "--port", "0"],
                stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True,
            )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"listening on (http://\S+)", line)
        if match is None:
            proc.kill()
            raise DevError(f"the scripted model server did not start; see {log}")
        return cls(proc, match.group(1))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def forget_requests(self) -> None:
        """The server records every request for tests; a long bench clears that record."""
        import urllib.request

        url = f"{self.base_url}/_requests"  # http, printed by the server itself
        request = urllib.request.Request(url, method="DELETE")  # noqa: S310
        with contextlib.suppress(OSError), urllib.request.urlopen(request, timeout=5):  # noqa: S310
            pass

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@dataclass
class BenchStack:
    """Services (with replicas) on one :class:`Layout`; start, inspect, stop."""

    bootstrap: str
    mongo_uri: str
    model: ModelServer
    run_dir: Path
    log_dir: Path
    layout: Layout | None = None
    running: list[services.ServiceProcess] = field(default_factory=list)
    log_level: str = "WARNING"
    db_profile: Path | None = None  # count each service's database commands into this folder

    # -- environment --------------------------------------------------------------

    def env(self, layout: Layout) -> dict[str, str]:
        tool_modules = [*BUILTIN_MODULES, BENCH_TOOLS_MODULE]
        extra: dict[str, str] = {}
        if self.db_profile is not None:
            self.db_profile.mkdir(parents=True, exist_ok=True)
            path = [str(DB_PROFILE_DIR), *filter(None, [os.environ.get("PYTHONPATH")])]
            extra = {"PYTHONPATH": os.pathsep.join(path),
                     "MINDSTREAM_BENCH_DB_PROFILE": str(self.db_profile)}
        return {
            **extra,
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "MONGODB_URI": self.mongo_uri,
            "MINDSTREAM_TOPIC_PREFIX": layout.prefix,
            "MINDSTREAM_DB": layout.database,
            "MINDSTREAM_MODEL_BASE_URL": f"{self.model.base_url}/v1",
            "OPENAI_API_KEY": "scripted",
            "MINDSTREAM_LOG_LEVEL": self.log_level,
            "MINDSTREAM_TOOLS_MODULES": json.dumps(tool_modules),
            "MINDSTREAM_REASONING_TOOL_MODULES": json.dumps(tool_modules),
            "MINDSTREAM_CONTROL_PLANE_BOOTSTRAP_TOKEN": "ms_bench_" + uuid.uuid4().hex[:16],
            # Consumer groups carry the topic prefix: the lag monitor watches this system's.
            "MINDSTREAM_TELEMETRY_LAG_GROUPS": json.dumps([f"{layout.prefix}mindstream-"]),
        }

    # -- topics and agents ------------------------------------------------------------

    async def create_topics(self, layout: Layout) -> int:
        """Every registered topic under ``layout.prefix``; session topics get ``layout.partitions``."""
        planned = planned_topics(TOPICS, layout.prefix)
        session_topics = {spec.physical(layout.prefix) for spec in TOPICS if spec.key == "session_id"}
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([
                NewTopic(p.name, layout.partitions if p.name in session_topics else p.partitions, 1,
                         topic_configs=p.configs)
                for p in planned
            ])
        finally:
            await admin.close()
        return len(planned)

    def apply_agents(self, layout: Layout) -> None:
        """``mindstream agents apply -f`` the bench agents, as an operator would."""
        result = subprocess.run(
            [sys.executable, "-m", "mindstream.cli.main", "agents", "apply", "-f", str(AGENTS_DIR)],
            capture_output=True, text=True, check=False, env={**os.environ, **self.env(layout)},
        )
        if result.returncode != 0:
            raise DevError(f"applying the bench agents failed: {(result.stderr or result.stdout).strip()}")

    # -- services -----------------------------------------------------------------------

    def start(self, layout: Layout, replicas: int = 1,
              names: Sequence[str] = services.SERVICES, timeout_s: float = 120.0) -> None:
        """Start ``replicas`` processes of each service on ``layout`` and wait until all are ready."""
        self.layout = layout
        if self.db_profile is not None:  # counts of earlier processes would be misread as these
            for stale in self.db_profile.glob("*.json"):
                stale.unlink(missing_ok=True)
        base = self.env(layout)
        try:
            for replica in range(1, replicas + 1):
                for name in names:
                    env = {**base, services.port_env_var(name): str(free_port()),
                           "MINDSTREAM_DB": layout.database_of(name)}
                    if name == "control-plane":  # its API and its probes each take a port
                        env.setdefault("MINDSTREAM_CONTROL_PLANE_HTTP_PORT", str(free_port()))
                        env.setdefault("MINDSTREAM_CONTROL_PLANE_PROBE_PORT", str(free_port()))
                    instance = f"bench-{name}-{replica}"
                    env["MINDSTREAM_BENCH_INSTANCE"] = instance.removeprefix("bench-")
                    self.running.append(services.start(name, env=env, run_dir=self.run_dir,
                                                       log_dir=self.log_dir, instance=instance))
            services.wait_ready(self.running, timeout_s=timeout_s)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM every service at once (they shut down in parallel), then wait;
        a process still there after ``timeout_s`` gets SIGKILL."""
        alive = [s for s in self.running if process.alive(s.tracked)]
        for service in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(service.tracked.pid, signal.SIGTERM)
        process.wait_for(lambda: not any(process.alive(s.tracked) for s in alive), timeout_s)
        for service in self.running:
            services.stop(service, self.run_dir, timeout_s=5.0)  # stragglers; pid files
        self.running.clear()

    def dead(self) -> list[str]:
        return [s.instance for s in self.running if not process.alive(s.tracked)]

    def pids(self) -> dict[str, int]:
        """Every process of the system under test by name (services, model)."""
        found = {s.instance.removeprefix("bench-"): s.tracked.pid for s in self.running}
        found["scripted-model"] = self.model.pid
        return found

    def iter_logs(self) -> Iterator[Path]:
        for s in self.running:
            yield s.tracked.log

    async def drop(self, layout: Layout) -> None:
        """Remove a phase's topics and database (best effort: the bench must not leave litter)."""
        from pymongo import AsyncMongoClient

        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        with contextlib.suppress(Exception):
            await admin.start()
            names = [t for t in await admin.list_topics() if t.startswith(layout.prefix)]
            if names:
                await admin.delete_topics(names)
        with contextlib.suppress(Exception):
            await admin.close()
        client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
            self.mongo_uri, serverSelectionTimeoutMS=5000)
        for database in layout.databases():
            with contextlib.suppress(Exception):
                await client.drop_database(database)
        await client.close()

