"""`mindstream dev` on a second, private stack: up, a harmless second up, a broker
killed by hand shows as down, and down stops exactly what up started."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from mindstream.dev import DevSettings, down, status, up
from mindstream.dev import process as proc
from mindstream.dev.process import free_port

pytestmark = pytest.mark.integration




@pytest.fixture
def private_settings(tmp_path: Path, infra: object, monkeypatch: pytest.MonkeyPatch) -> DevSettings:
    """A stack in a temp folder on free ports, reusing the downloaded Kafka jars and FerretDB."""
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.delenv("MONGODB_URI", raising=False)
    shared = DevSettings()
    settings = DevSettings(cache_dir=tmp_path, kafka_port=free_port(),
                           kafka_controller_port=free_port(), mongo_port=free_port(),
                           kafka_heap="256m")
    settings.kafka_libs.parent.mkdir(parents=True)
    settings.kafka_libs.symlink_to(shared.kafka_libs)
    settings.ferretdb_bin.parent.mkdir(parents=True)
    if shared.ferretdb_bin.exists():
        settings.ferretdb_bin.symlink_to(shared.ferretdb_bin)
    return settings


def test_up_status_kill_down(private_settings: DevSettings, capsys: pytest.CaptureFixture[str]) -> None:
    settings = private_settings
    try:
        up(settings)
        assert {row.name: row.state for row in status(settings)} == {"kafka": "running", "mongo": "running"}
        capsys.readouterr()
        up(settings)
        again = capsys.readouterr().err
        assert "kafka: already running" in again and "mongo: already running" in again

        kafka = proc.read(settings.run_dir, "kafka")
        assert kafka is not None
        os.kill(kafka.pid, signal.SIGKILL)
        assert proc.wait_for(lambda: not proc.alive(kafka), 10)
        states = {row.name: row.state for row in status(settings)}
        assert states == {"kafka": "down", "mongo": "running"}
    finally:
        stopped = down(settings)
    assert stopped == ["mongo"]  # the killed broker was no longer ours to stop
    assert {row.state for row in status(settings)} == {"stopped"}
