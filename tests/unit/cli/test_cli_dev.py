"""Dev-infrastructure errors reach the user as one line, with a meaningful exit code."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mindstream.cli.main import main
from mindstream.dev import DevError, DevSettings
from mindstream.dev import kafka as dev_kafka
from mindstream.dev import process as proc

pytestmark = pytest.mark.unit


def test_port_taken_is_one_readable_line(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        settings = DevSettings(cache_dir=tmp_path, kafka_port=port)
        with pytest.raises(DevError, match=f"port {port} is already in use"):
            dev_kafka.start(settings)


def test_missing_java_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(dev_kafka.shutil, "which", lambda _name: None)
    with pytest.raises(DevError, match="Java is not installed"):
        dev_kafka.start(DevSettings(cache_dir=tmp_path))


def test_failed_download_names_the_log(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(dev_kafka.shutil, "which", lambda name: "/bin/false" if name == "mvn" else None)
    with pytest.raises(DevError, match="downloading Kafka's jars with Maven failed; see"):
        dev_kafka.install(DevSettings(cache_dir=tmp_path))


def test_cli_turns_dev_errors_into_one_line(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from mindstream import dev

    def boom(*_a: object) -> None:
        raise DevError("port 9092 is already in use by another process; stop it")

    monkeypatch.setattr(dev, "up", boom)
    assert main(["dev", "up"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["mindstream: port 9092 is already in use by another process; stop it"]


def test_unknown_command_exits_2() -> None:
    result = subprocess.run([sys.executable, "-m", "mindstream.cli.main", "nope"], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_stop_never_kills_a_stranger_with_a_recycled_pid(tmp_path: Path) -> None:
    """A pid file whose start time does not match the live process is not ours."""
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        (tmp_path / "x.pid.json").write_text(
            f'{{"pid": {sleeper.pid}, "start_ticks": 1, "log": "{tmp_path / "log"}"}}')
        assert proc.stop(tmp_path, "x", timeout_s=1) is False
        assert sleeper.poll() is None  # still running
    finally:
        sleeper.kill()
        sleeper.wait()


def test_spawned_process_is_tracked_and_stopped(tmp_path: Path) -> None:
    tracked = proc.spawn("s", ["sleep", "30"], run_dir=tmp_path, log=tmp_path / "s.log", cwd=tmp_path)
    assert proc.alive(proc.read(tmp_path, "s"))
    assert proc.stop(tmp_path, "s", timeout_s=5) is True
    assert not proc.alive(tracked)
    assert proc.read(tmp_path, "s") is None
