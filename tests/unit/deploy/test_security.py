"""The security review checklist, run over every rendered overlay.

Each check is one line of the checklist in deploy/README.md: non-root, not
privileged, no privilege escalation, read-only root, capabilities dropped,
seccomp, resource limits, probes on long-running containers, no service
account token, and secrets only ever by reference.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import checks
import deployspec
import pytest
import yaml

from tests.unit.deploy.conftest import Docs

pytestmark = pytest.mark.unit

# Names that say "secret" and values that look like one (tokens, keys, credentials in URLs).
SECRET_NAME = re.compile(r"(PASSWORD|SECRET|TOKEN|API_KEY|PRIVATE_KEY|CREDENTIAL|_URI$)")
SECRET_VALUE = re.compile(r"(://[^/\s:@]+:[^@\s]+@|^sk-[A-Za-z0-9]{8,}|^AKIA[0-9A-Z]{12,}|"
                          r"-----BEGIN [A-Z ]*PRIVATE KEY-----|^[A-Za-z0-9+/=_-]{40,}$)")


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def _workloads(docs: Docs) -> list[tuple[str, dict[str, Any]]]:
    found = list(checks.pod_specs(docs))
    assert found, "no workloads rendered"
    return found


def secret_problems(docs: Docs) -> list[str]:
    """Inlined secrets anywhere: Secret objects, env literals, ConfigMap values."""
    problems = []
    for doc in docs:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] == "Secret":
            problems.append(f"{where}: Secret objects are created out of band, never rendered")
        if doc["kind"] == "ConfigMap":
            for key, value in doc.get("data", {}).items():
                if SECRET_NAME.search(key) or SECRET_VALUE.search(str(value)):
                    problems.append(f"{where}: {key} looks like a secret")
    for where, pod in checks.pod_specs(docs):
        for container in _containers(pod):
            for env in container.get("env", []):
                name, value = env["name"], env.get("value")
                if value is None:
                    continue
                if SECRET_NAME.search(name) or SECRET_VALUE.search(value):
                    problems.append(f"{where}/{container['name']}: env {name} is inlined")
    return problems


@pytest.mark.parametrize("target", checks.OVERLAYS)
def test_pods_run_unprivileged(rendered: dict[str, Docs], target: str) -> None:
    for where, pod in _workloads(rendered[target]):
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", where
        assert pod.get("automountServiceAccountToken") is False, where
        assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
        for volume in pod.get("volumes", []):
            assert "hostPath" not in volume, f"{where}: hostPath volume {volume['name']}"
        for c in _containers(pod):
            sc = c["securityContext"]
            label = f"{where}/{c['name']}"
            assert sc["runAsNonRoot"] is True and sc["runAsUser"] == deployspec.UID, label
            assert sc.get("privileged", False) is False, label
            assert sc["allowPrivilegeEscalation"] is False, label
            assert sc["readOnlyRootFilesystem"] is True, label
            assert sc["capabilities"]["drop"] == ["ALL"], label
            assert not sc["capabilities"].get("add"), label
            assert sc["seccompProfile"]["type"] == "RuntimeDefault", label


@pytest.mark.parametrize("target", checks.OVERLAYS)
def test_containers_have_limits_and_a_writable_tmp(rendered: dict[str, Docs], target: str) -> None:
    for where, pod in _workloads(rendered[target]):
        for c in _containers(pod):
            label = f"{where}/{c['name']}"
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][bound]), f"{label}: {bound}"
            mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
            tmp_volume = {v["name"]: v for v in pod["volumes"]}[mounts["/tmp"]]  # noqa: S108
            assert "emptyDir" in tmp_volume, label
            assert ":" in c["image"] and not c["image"].endswith(":latest"), label


@pytest.mark.parametrize("target", checks.OVERLAYS)
def test_services_have_probes_and_stop_gracefully(rendered: dict[str, Docs], target: str) -> None:
    for where, pod in _workloads(rendered[target]):
        if not where.startswith("Deployment/"):
            continue
        (c,) = pod["containers"]
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz", where
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz", where
        assert c["startupProbe"]["httpGet"]["path"] == "/healthz", where
        grace = pod["terminationGracePeriodSeconds"]
        assert grace >= deployspec.GRACEFUL_TIMEOUT_S + deployspec.PRESTOP_SLEEP_S + 10, where
        assert pod["enableServiceLinks"] is False, where


@pytest.mark.parametrize("target", checks.OVERLAYS)
def test_secrets_are_referenced_never_inlined(rendered: dict[str, Docs], target: str) -> None:
    docs = rendered[target]
    assert secret_problems(docs) == []
    secret_names = deployspec.secret_env_names()
    for where, pod in checks.pod_specs(docs):
        for c in _containers(pod):
            for env in c.get("env", []):
                if env["name"] in secret_names or env["name"].startswith("KAFKA_SASL_"):
                    assert "secretKeyRef" in env.get("valueFrom", {}), f"{where}: {env['name']}"


def test_the_secret_check_catches_inlined_values(rendered: dict[str, Docs]) -> None:
    docs = [dict(d) for d in rendered["dev"]]
    (config,) = [d for d in docs if d["kind"] == "ConfigMap"]
    config["data"] = {**config["data"], "MONGODB_URI": "mongodb://app:hunter22@db:27017"}
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [*container["env"], {"name": "OPENAI_API_KEY", "value": "sk-abcdefghijk"}]
    docs.append({"kind": "Secret", "metadata": {"name": "oops"}, "stringData": {"k": "v"}})
    problems = secret_problems(docs)
    assert len(problems) == 3, problems


def test_secret_example_documents_every_reference_and_is_never_rendered(
    rendered: dict[str, Docs], tmp_path: Path
) -> None:
    from _gen import ROOT

    example_path = ROOT / "deploy/k8s/secret.example.yaml"
    example = {d["metadata"]["name"]: set(d["stringData"])
               for d in yaml.safe_load_all(example_path.read_text()) if d}
    for target in checks.OVERLAYS:
        for where, pod in checks.pod_specs(rendered[target]):
            for c in _containers(pod):
                for env in c.get("env", []):
                    ref = env.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        assert ref["key"] in example.get(ref["name"], set()), f"{where}: {ref}"
            for volume in pod.get("volumes", []):
                if "secret" in volume:
                    keys = {i["key"] for i in volume["secret"]["items"]}
                    assert keys <= example[volume["secret"]["secretName"]]
    copy = tmp_path / "secret.example.yaml"
    copy.write_text(example_path.read_text())
    results = checks.kubeconform([copy], checks.versions()["KUBE_VERSIONS"].split()[-1])
    assert {r["status"] for r in results} == {"statusValid"}
    for kustomization in (ROOT / "deploy/k8s").rglob("kustomization.yaml"):
        assert "secret.example" not in yaml.safe_dump(yaml.safe_load(kustomization.read_text()))
