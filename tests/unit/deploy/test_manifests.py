"""Every overlay renders and validates against Kubernetes' schemas; the pieces fit together."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import checks
import deployspec
import pytest
import yaml

from tests.unit.deploy.conftest import Docs, by_kind

pytestmark = pytest.mark.unit

KUBE_VERSIONS = checks.versions()["KUBE_VERSIONS"].split()
APP_OVERLAYS = checks.OVERLAYS


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("target", [*APP_OVERLAYS, "strimzi"])
def test_overlay_is_valid_for_kubernetes(
    validation: dict[tuple[str, str], list[dict[str, str]]],
    rendered: dict[str, Docs], target: str, kube_version: str,
) -> None:
    results = validation[(target, kube_version)]
    assert len(results) == len(rendered[target])
    bad = [f"{r['kind']}/{r['name']}: {r['msg']}" for r in results
           if r["status"] not in ("statusValid", "statusSkipped")]
    assert not bad, "\n".join(bad)
    skipped = {r["kind"] for r in results if r["status"] == "statusSkipped"}
    assert skipped <= set(checks.CRD_KINDS)  # only custom resources go unvalidated


def test_kubeconform_rejects_a_broken_manifest(
    rendered: dict[str, Docs], tmp_path: Path
) -> None:
    deployment = dict(by_kind(rendered["dev"], "Deployment")["mindstream-reasoning"])
    deployment["spec"] = {**deployment["spec"], "replicaz": 2}
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(deployment))
    (result,) = checks.kubeconform([broken], KUBE_VERSIONS[0])
    assert result["status"] == "statusInvalid"
    assert "replicaz" in result["msg"]


@pytest.mark.parametrize("target", APP_OVERLAYS)
def test_every_service_has_its_objects(rendered: dict[str, Docs], target: str) -> None:
    docs = rendered[target]
    for kind in ("Deployment", "Service", "PodDisruptionBudget", "ServiceAccount"):
        names = set(by_kind(docs, kind))
        for s in deployspec.SERVICES:
            assert f"mindstream-{s.name}" in names, f"{target}: {kind} for {s.name} missing"
    assert "mindstream-provision" in by_kind(docs, "Job")
    namespaces = {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"}
    (namespace,) = by_kind(docs, "Namespace")
    assert namespaces == {namespace}


@pytest.mark.parametrize("target", APP_OVERLAYS)
def test_selectors_match_pods(rendered: dict[str, Docs], target: str) -> None:
    docs = rendered[target]
    pods = {n: d["spec"]["template"]["metadata"]["labels"]
            for n, d in by_kind(docs, "Deployment").items()}

    def matches(selector: dict[str, str]) -> bool:
        return any(selector.items() <= labels.items() for labels in pods.values())

    for kind, path in (("Service", ("spec", "selector")),
                       ("PodDisruptionBudget", ("spec", "selector", "matchLabels"))):
        for name, doc in by_kind(docs, kind).items():
            selector: Any = doc
            for key in path:
                selector = selector[key]
            assert matches(selector), f"{kind}/{name} selects no pod"


@pytest.mark.parametrize("target", APP_OVERLAYS)
def test_named_ports_exist(rendered: dict[str, Docs], target: str) -> None:
    docs = rendered[target]
    for name, deployment in by_kind(docs, "Deployment").items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert "metrics" in ports
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert container[probe]["httpGet"]["port"] in ports, f"{name}.{probe}"
        service = by_kind(docs, "Service")[name]
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports
    for monitor in by_kind(docs, "ServiceMonitor").values():
        for endpoint in monitor["spec"]["endpoints"]:
            assert all(endpoint["port"] in {p["name"] for p in s["spec"]["ports"]}
                       for s in by_kind(docs, "Service").values())


def test_keda_scales_each_deployment_on_its_consumer_groups(rendered: dict[str, Docs]) -> None:
    docs = rendered["prod"]
    deployments = by_kind(docs, "Deployment")
    scaled = by_kind(docs, "ScaledObject")
    assert set(scaled) == set(deployments)
    for name, obj in scaled.items():
        assert obj["spec"]["scaleTargetRef"]["name"] == name
        triggers = obj["spec"]["triggers"]
        assert triggers
        for trigger in triggers:  # one per (group, topic): mindstream-<service>.<domain>-<event>
            assert trigger["type"] == "kafka"
            assert trigger["metadata"]["consumerGroup"].startswith(name + ".")
            assert trigger["metadata"]["topic"].startswith("mindstream.")
            assert int(trigger["metadata"]["lagThreshold"]) > 0
            assert trigger["authenticationRef"]["name"] in by_kind(docs, "TriggerAuthentication")
        assert obj["spec"]["maxReplicaCount"] <= 12  # partitions of the session topics
        env_from = deployments[name]["spec"]["template"]["spec"]["containers"][0]["envFrom"]
        assert env_from  # bootstrapServersFromEnv resolves through the ConfigMap
    # The autoscaler owns the replica count: nothing in the manifests may fight it.
    assert all("replicas" not in d["spec"] for d in deployments.values())
    assert not by_kind(docs, "HorizontalPodAutoscaler")


def test_hpa_overlay_scales_on_cpu_instead(rendered: dict[str, Docs]) -> None:
    docs = rendered["prod-hpa"]
    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    assert set(hpas) == set(by_kind(docs, "Deployment"))
    assert not by_kind(docs, "ScaledObject")
    for hpa in hpas.values():
        (metric,) = hpa["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu"
    assert all("replicas" not in d["spec"] for d in by_kind(docs, "Deployment").values())


def test_dev_runs_one_replica_without_autoscaling(rendered: dict[str, Docs]) -> None:
    docs = rendered["dev"]
    assert {d["spec"]["replicas"] for d in by_kind(docs, "Deployment").values()} == {1}
    assert not by_kind(docs, "ScaledObject")
    assert not by_kind(docs, "HorizontalPodAutoscaler")


def test_prod_config_uses_authenticated_tls_kafka(rendered: dict[str, Docs]) -> None:
    (config,) = by_kind(rendered["prod"], "ConfigMap").values()
    assert config["data"]["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert config["data"]["KAFKA_SSL_CAFILE"].startswith(deployspec.KAFKA_CA_DIR)
    (dev,) = by_kind(rendered["dev"], "ConfigMap").values()
    assert "KAFKA_SASL_MECHANISM" not in dev["data"]  # empty would be invalid, absent is "none"


@pytest.mark.parametrize("target", APP_OVERLAYS)
def test_network_policies_deny_by_default_and_allow_needs(
    rendered: dict[str, Docs], target: str
) -> None:
    policies = by_kind(rendered[target], "NetworkPolicy")
    deny = policies["mindstream-default-deny"]["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    core = policies["mindstream-core-egress"]["spec"]["egress"]
    allowed = {p["port"] for rule in core for p in rule["ports"]}
    assert {53, 9092, 9093, 27017} <= allowed
    for s in deployspec.SERVICES:
        policy = policies[f"mindstream-{s.name}"]["spec"]
        ingress_ports = {p["port"] for rule in policy["ingress"] for p in rule["ports"]}
        assert "metrics" in ingress_ports
        assert ("api" in ingress_ports) == (s.api_port is not None)
        assert ("egress" in policy) == s.model_egress


def test_strimzi_topics_live_in_the_kafka_namespace(rendered: dict[str, Docs]) -> None:
    topics = by_kind(rendered["strimzi"], "KafkaTopic")
    assert topics
    assert {t["metadata"]["namespace"] for t in topics.values()} == {"kafka"}


def test_strimzi_overlay_leaves_topics_to_the_operator(rendered: dict[str, Docs]) -> None:
    spec = by_kind(rendered["prod-strimzi"], "Job")["mindstream-provision"]["spec"]
    pod = spec["template"]["spec"]
    assert "initContainers" not in pod
    assert pod["containers"][0]["args"][:2] == ["agents", "apply"]
    prod = by_kind(rendered["prod"], "Job")["mindstream-provision"]["spec"]["template"]["spec"]
    assert prod["initContainers"][0]["args"] == ["topics", "apply"]
