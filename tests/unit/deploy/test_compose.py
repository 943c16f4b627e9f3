"""docker-compose.yml is valid Compose, wired in the right order, and takes versions from .env."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import checks
import deployspec
import pytest
from _gen import ROOT

pytestmark = pytest.mark.unit

INFRA = ("kafka", "mongo", "prometheus", "grafana")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data, problems = checks.load_compose()
    assert problems == []
    services: dict[str, Any] = data["services"]
    return services


def test_compose_file_matches_the_compose_specification() -> None:
    assert checks.compose_problems() == []


def test_schema_check_catches_mistakes(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    text = (ROOT / "docker-compose.yml").read_text()
    broken.write_text(text.replace("condition: service_healthy", "condition: when_ready", 1)
                          .replace("stop_grace_period: 45s", "stop_grace_period: 45s\n  bogus: 1"))
    problems = checks.compose_problems(broken)
    assert any("when_ready" in p for p in problems), problems


def test_interpolation_needs_every_variable() -> None:
    problems: list[str] = []
    assert checks.interpolate("${A}-${B:-b}-${C-c}-$$", {"A": "a"}, problems, "x") == "a-b-c-$"
    assert problems == []
    checks.interpolate("${MISSING}", {}, problems, "x")
    checks.interpolate("${REQUIRED:?set it}", {}, problems, "y")
    assert len(problems) == 2


def test_every_service_is_there_and_runs_the_one_image(compose: dict[str, Any]) -> None:
    env = checks.compose_env()
    image = f"{env['MINDSTREAM_IMAGE']}:{env['MINDSTREAM_VERSION']}"
    for s in deployspec.SERVICES:
        service = compose[s.name]
        assert service["image"] == image
        assert service["command"] == [s.name]
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
    assert compose["provision"]["image"] == image
    for name in INFRA:
        assert compose[name]["image"] in env.values(), f"{name}: image not from .env"


def test_start_order_uses_health_and_completion(compose: dict[str, Any]) -> None:
    for s in deployspec.SERVICES:
        assert compose[s.name]["depends_on"] == {
            "kafka": {"condition": "service_healthy"},
            "mongo": {"condition": "service_healthy"},
            "provision": {"condition": "service_completed_successfully"},
        }
        assert "healthcheck" in compose[s.name]
    assert compose["provision"]["depends_on"] == {"kafka": {"condition": "service_healthy"}}
    assert "topics apply" in compose["provision"]["command"][0]
    assert "agents apply -f /app/agents" in compose["provision"]["command"][0]
    for name in ("kafka", "mongo"):
        assert "healthcheck" in compose[name]
    assert "rs.initiate" in " ".join(compose["mongo"]["healthcheck"]["test"])
    assert "--replSet" in compose["mongo"]["command"]
    assert "replicaSet=rs0" in checks.compose_env(ROOT / "deploy/compose/mindstream.env")[
        "MONGODB_URI"]
    assert compose["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"


def test_containers_are_hardened_like_the_pods(compose: dict[str, Any]) -> None:
    for name in ("provision", *(s.name for s in deployspec.SERVICES)):
        service = compose[name]
        assert service["user"] == f"{deployspec.UID}:{deployspec.UID}"
        assert service["read_only"] is True
        assert service["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in service["security_opt"]
        assert any(t.startswith("/tmp") for t in service["tmpfs"])  # noqa: S108 - in the container


def test_mounted_files_exist(compose: dict[str, Any]) -> None:
    for name, service in compose.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
        for env_file in service.get("env_file", []):
            assert (ROOT / env_file).exists(), f"{name}: env_file {env_file} missing"
