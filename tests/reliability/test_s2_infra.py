"""Scenario 2: the infrastructure fails under load: the Kafka broker is killed and
restarted, then the MongoDB-wire server (FerretDB) is stopped for a few seconds.

Both run privately (a broker and a FerretDB of this test, on free ports, in a
temp folder, reusing the downloaded jars and binary), so the shared dev
infrastructure other tests use is never touched. The client keeps retrying
sends with the same run id while the broker is away, as a client should.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from mindstream.dev import DevSettings, down, process, up
from mindstream.dev.process import free_port
from tests.infra import Infra
from tests.reliability.harness import ScenarioRun, running_stack
from tests.reliability.results import Results
from tests.reliability.stack import StackSpec

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(900)]

OUTAGE_S = 5.0


def _private(tmp: Path) -> DevSettings:
    shared = DevSettings()
    settings = DevSettings(cache_dir=tmp, kafka_port=free_port(),
                           kafka_controller_port=free_port(), mongo_port=free_port())
    settings.kafka_libs.parent.mkdir(parents=True)
    settings.kafka_libs.symlink_to(shared.kafka_libs)
    settings.ferretdb_bin.parent.mkdir(parents=True)
    if shared.ferretdb_bin.exists():
        settings.ferretdb_bin.symlink_to(shared.ferretdb_bin)
    return settings


async def _probe(run: ScenarioRun, tag: str) -> None:
    await asyncio.gather(run.driver.one(f"s2-probe-{tag}", "plain", "echo", timeout=180),
                         run.driver.one(f"s2-probe-{tag}-t", "tooly", "bump", timeout=180))


async def test_broker_restart_and_database_outage(
    infra: Infra, reliability_dir: Path, results: Results, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.delenv("MONGODB_URI", raising=False)
    settings = _private(reliability_dir / "private-infra")
    try:
        ends = await asyncio.to_thread(up, settings)
        spec = StackSpec(ends.kafka_bootstrap, ends.mongo_uri, reliability_dir / "private")
        async with running_stack(spec, results) as harness:
            run = await harness.begin("2-broker-and-db-outage", send_retries=40,
                                      result_timeout=240.0)
            d, completions = run.driver, harness.completions
            stop = asyncio.Event()

            async def work(n: int) -> None:
                if n % 3 == 1:
                    await d.sequential(f"s2-t{n}", "tooly", ["bump", "bump"])
                elif n % 3 == 2:
                    await d.workflow(f"s2-w{n}", "relay")
                else:
                    await d.ordered(f"s2-o{n}", "plain", ["echo"] * 3)

            load = asyncio.create_task(d.until(stop, work, workers=4))
            recovery: dict[str, float] = {}
            try:
                await completions.progressed(6, timeout=180)
                broker = process.read(settings.run_dir, "kafka")
                assert broker is not None
                os.kill(broker.pid, signal.SIGKILL)
                started = time.monotonic()
                await asyncio.to_thread(process.wait_for, lambda: not process.alive(broker), 30)
                await asyncio.to_thread(up, settings)  # the same broker, same data, again
                recovery["broker_back_s"] = round(time.monotonic() - started, 1)
                await _probe(run, "broker")
                recovery["broker_recover_s"] = round(time.monotonic() - started, 1)

                await completions.progressed(6, timeout=180)
                started = time.monotonic()
                await asyncio.to_thread(process.stop, settings.run_dir, "mongo", timeout_s=10)
                await asyncio.sleep(OUTAGE_S)  # the outage itself: nothing to await
                await asyncio.to_thread(up, settings)
                await _probe(run, "db")
                recovery["db_recover_s"] = round(time.monotonic() - started, 1)
                await completions.progressed(6, timeout=180)
            finally:
                stop.set()
                await load
            run.figures.update(recovery)
            run.figures["recover_s"] = max(recovery["broker_recover_s"], recovery["db_recover_s"])
            await run.finish(idle_timeout_s=240)
    finally:
        await asyncio.to_thread(down, settings)
