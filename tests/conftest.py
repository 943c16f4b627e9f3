"""Fixtures shared by every test: infrastructure, per-test topic prefixes and databases."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from pymongo import AsyncMongoClient

from schemas.topics import TOPICS
from shared.kafka.admin import apply_topics
from shared.settings import KafkaSettings, MongoSettings
from shared.tasks import await_chain
from tests.infra import Infra, delete_topics_with_prefix, planned_backend, provide

_infra: Infra | None = None


def pytest_report_header(config: pytest.Config) -> str:
    return f"integration backend: {planned_backend()}"


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    global _infra  # noqa: PLW0603 - reported in the terminal summary
    with provide() as found:
        _infra = found
        print(f"\nintegration backend: {found.backend}")
        yield found


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    # Under pytest-xdist the workers hold the fixture; the controller reports the plan.
    backend = _infra.backend if _infra is not None else planned_backend()
    terminalreporter.write_line(f"integration backend: {backend}")


@pytest.fixture
def topic_prefix() -> str:
    """A unique prefix per test, so tests never share topics and can run in parallel."""
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture
def kafka_settings(infra: Infra, topic_prefix: str) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=infra.kafka_bootstrap, MINDSTREAM_TOPIC_PREFIX=topic_prefix)


@pytest.fixture
async def topics(kafka_settings: KafkaSettings) -> AsyncIterator[KafkaSettings]:
    """Every registered topic (and its dead-letter twin) under the test's prefix.

    Partitions are capped at 3 to keep topic creation quick; tests about
    partition spread ask for what they need themselves. The test's topics
    (and any it made under its prefix) are deleted afterwards: a broker keeps
    files open per partition, and a suite's worth would exhaust them.
    """
    await apply_topics(kafka_settings, TOPICS, prefix=kafka_settings.topic_prefix, max_partitions=3)
    yield kafka_settings
    await delete_topics_with_prefix(kafka_settings.bootstrap_servers, kafka_settings.topic_prefix)


@pytest.fixture
def mongo_settings(infra: Infra) -> MongoSettings:
    return MongoSettings(uri=infra.mongo_uri, MINDSTREAM_DB=f"test_{uuid.uuid4().hex[:12]}")


@pytest.fixture
async def mongo_db(mongo_settings: MongoSettings) -> AsyncIterator[object]:
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
        mongo_settings.uri.get_secret_value(), tz_aware=True)
    db = client[mongo_settings.database]
    yield db
    await client.drop_database(mongo_settings.database)
    await client.close()


@pytest.fixture(autouse=True)
async def _dump_tasks_before_timeout(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Print every asyncio task's stack shortly before pytest-timeout fires.

    pytest-timeout shows the threads' stacks, which for an async test is the
    event loop sitting in ``select``: it never says which await hung. This
    says it, on the loop itself (the loop is alive while a test waits).
    """
    marker = request.node.get_closest_marker("timeout")
    limit = float(marker.args[0]) if marker and marker.args else float(
        request.config.getini("timeout") or 0)
    if limit <= 0:
        yield
        return
    loop = asyncio.get_running_loop()
    handle = loop.call_later(max(limit - 10.0, limit * 0.9), _dump_tasks, request.node.nodeid)
    try:
        yield
    finally:
        handle.cancel()


def _dump_tasks(nodeid: str) -> None:
    out = sys.stderr
    print(f"\n+++ {nodeid}: about to time out; asyncio tasks:", file=out)
    for task in asyncio.all_tasks():
        print(f"--- {task!r}", file=out)
        for line in await_chain(task):
            print(f"    {line}", file=out)
    out.flush()
