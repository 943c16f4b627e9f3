"""Which Kafka and MongoDB the integration tests run against, chosen once per session.

In order: ``KAFKA_BOOTSTRAP_SERVERS`` / ``MONGODB_URI`` if set (an existing
cluster); else testcontainers when a Docker engine answers; else the local
processes of ``mindstream dev up`` (real Apache Kafka from Maven Central and
FerretDB), started if they are not running. Concurrent pytest-xdist workers
serialise the start with a file lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

from mindstream.dev import DevSettings, up


@dataclass(frozen=True)
class Infra:
    kafka_bootstrap: str
    mongo_uri: str
    backend: str


def _docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    result = subprocess.run(["docker", "info"], capture_output=True, check=False, timeout=10)
    return result.returncode == 0


def planned_backend() -> str:
    """Which backend :func:`provide` will choose, without starting anything."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS") and os.environ.get("MONGODB_URI"):
        return "external Kafka and MongoDB (KAFKA_BOOTSTRAP_SERVERS, MONGODB_URI)"
    if os.environ.get("MINDSTREAM_TEST_BACKEND", "auto") in ("auto", "docker") and _docker_available():
        return "testcontainers: Kafka and MongoDB images"
    from mindstream.dev.stack import endpoints

    return endpoints(DevSettings()).backend


@contextlib.contextmanager
def provide() -> Iterator[Infra]:
    kafka_env, mongo_env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS"), os.environ.get("MONGODB_URI")
    if kafka_env and mongo_env:
        yield Infra(kafka_env, mongo_env, f"external Kafka {kafka_env}; external MongoDB")
        return
    if os.environ.get("MINDSTREAM_TEST_BACKEND", "auto") in ("auto", "docker") and _docker_available():
        from testcontainers.kafka import KafkaContainer
        from testcontainers.mongodb import MongoDbContainer

        with KafkaContainer().with_kraft() as kafka, MongoDbContainer("mongo:7") as mongo:
            yield Infra(kafka.get_bootstrap_server(), mongo.get_connection_url(),
                        "testcontainers: Kafka and MongoDB images")
        return
    settings = DevSettings()
    lock_path = settings.cache_dir / "dev" / "up.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ends = up(settings)
    yield Infra(ends.kafka_bootstrap, ends.mongo_uri, ends.backend)


async def delete_topics_with_prefix(bootstrap: str, prefix: str) -> None:
    """Remove a test's topics; best effort (a broker that is gone has nothing to clean)."""
    from aiokafka.admin import AIOKafkaAdminClient

    if not prefix:
        return
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        await admin.start()
        names = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if names:
            await admin.delete_topics(names)
    except Exception:  # noqa: S110 - cleanup must not fail the test that ran
        pass
    finally:
        await admin.close()
