"""Ports, env names, topics and consumer groups agree across settings, compose and manifests.

The sources of truth are the services' settings classes (ports, env names),
``schemas/topics.py`` (topics) and ``shared/service.py`` (group names); every
deploy file is checked against them here.
"""

from __future__ import annotations

import importlib
from typing import Any

import checks
import deployspec
import pytest
import yaml
from _gen import ROOT

from tests.unit.deploy.conftest import Docs, by_kind

pytestmark = pytest.mark.unit


def _compose() -> dict[str, Any]:
    data, _ = checks.load_compose()
    services: dict[str, Any] = data["services"]
    return services


def test_settings_ports_are_used_everywhere(rendered: dict[str, Docs]) -> None:
    compose = _compose()
    scrape = yaml.safe_load((ROOT / "deploy/observability/prometheus.yml").read_text())
    targets = {t for job in scrape["scrape_configs"] for c in job.get("static_configs", [])
               for t in c["targets"]}
    ports_seen = set()
    for s in deployspec.SERVICES:
        ports = {"metrics": s.probe_port} | ({"api": s.api_port} if s.api_port else {})
        assert not ports_seen & set(ports.values()), f"{s.name}: port used twice"
        ports_seen |= set(ports.values())
        for target in ("dev", "prod"):
            (c,) = by_kind(rendered[target], "Deployment")[f"mindstream-{s.name}"][
                "spec"]["template"]["spec"]["containers"]
            assert {p["name"]: p["containerPort"] for p in c["ports"]} == ports
            env = {e["name"]: e.get("value") for e in c["env"]}
            for name, value in s.port_env().items():
                assert env[name] == value
        service = compose[s.name]
        for name, value in s.port_env().items():
            assert service["environment"][name] == value, f"compose {s.name}: {name}"
        published = {int(p.split(":")[1]) for p in service["ports"]}
        assert published == set(ports.values()), f"compose {s.name} publishes {published}"
        assert f"mindstream-{s.name}" in service["networks"]["default"]["aliases"]
        assert f"mindstream-{s.name}:{s.probe_port}" in targets
        health = " ".join(service["healthcheck"]["test"])
        assert f"127.0.0.1:{s.probe_port}/readyz" in health


def test_every_env_name_is_read_by_a_settings_class(rendered: dict[str, Docs]) -> None:
    known = deployspec.known_env_names()
    used: dict[str, set[str]] = {}
    for target in checks.OVERLAYS:
        for config in by_kind(rendered[target], "ConfigMap").values():
            used.setdefault(f"k8s {target} ConfigMap", set()).update(config["data"])
        for where, pod in checks.pod_specs(rendered[target]):
            for c in [*pod.get("initContainers", []), *pod["containers"]]:
                used.setdefault(f"k8s {target} {where}", set()).update(
                    e["name"] for e in c.get("env", []))
    for name, service in _compose().items():
        if name.startswith("mindstream") or name in {s.name for s in deployspec.SERVICES}:
            used[f"compose {name}"] = set(service.get("environment", {}))
    used["compose env_file"] = set(checks.compose_env(ROOT / "deploy/compose/mindstream.env"))
    for where, names in used.items():
        assert names <= known, f"{where}: nobody reads {sorted(names - known)}"


def test_keda_groups_are_the_groups_the_services_really_use() -> None:
    """Build each service (no network needed) and compare its subscriptions with the spec."""
    from shared.settings import KafkaSettings, MongoSettings

    for s in deployspec.SERVICES:
        app = importlib.import_module(f"services.{s.module}.app")
        runtime = app.build(s.settings_class()(), KafkaSettings(), MongoSettings())
        used = sorted((group, t) for t, group in runtime.subscriptions if group is not None)
        assert used == sorted(s.groups), s.name


def test_topic_names_and_counts_match_the_registry(rendered: dict[str, Docs]) -> None:
    from schemas.topics import TOPICS
    from shared.kafka.admin import planned_topics

    topics = {t["spec"]["topicName"]: t["spec"]["partitions"]
              for t in by_kind(rendered["strimzi"], "KafkaTopic").values()}
    assert topics == {p.name: p.partitions for p in planned_topics(TOPICS)}
    # No replica count above the partitions of what a service consumes: extra replicas idle.
    session_partitions = min(t.partitions for t in TOPICS if t.key == "session_id")
    assert all(s.max_replicas <= session_partitions for s in deployspec.SERVICES)


def test_env_file_and_versions_are_the_one_source() -> None:
    env = checks.compose_env()
    compose_text = (ROOT / "docker-compose.yml").read_text()
    for key in env:
        assert f"${{{key}" in compose_text, f".env {key} is not used by docker-compose.yml"
    dockerfile = (ROOT / "deploy/Dockerfile").read_text()
    assert f"ARG PYTHON_IMAGE={env['PYTHON_IMAGE']}" in dockerfile
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert env["MINDSTREAM_VERSION"] == version
    for overlay in checks.OVERLAYS:
        text = (ROOT / f"deploy/k8s/overlays/{overlay}/kustomization.yaml").read_text()
        assert f"newTag: {version}" in text, overlay
