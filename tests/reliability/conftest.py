"""Fixtures of the reliability suite: one shared stack for the scenarios that can share
it, the results file, and the table printed at the end of the run."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.infra import Infra
from tests.reliability.harness import Harness, running_stack
from tests.reliability.results import Results
from tests.reliability.stack import StackSpec

_results = Results()


@pytest.fixture(scope="session")
def results() -> Results:
    return _results


@pytest.fixture(scope="session")
def reliability_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("reliability")


@pytest.fixture(scope="session")
async def harness(infra: Infra, reliability_dir: Path, results: Results) -> AsyncIterator[Harness]:
    """Every core service as its own process on the shared broker and database server,
    under a topic prefix and database of its own."""
    spec = StackSpec(infra.kafka_bootstrap, infra.mongo_uri, reliability_dir / "shared")
    async with running_stack(spec, results) as h:
        yield h


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _results.scenarios:
        return
    terminalreporter.section("reliability figures")
    for line in _results.table():
        terminalreporter.write_line(line)
    terminalreporter.write_line(f"written to {_results.path}")
