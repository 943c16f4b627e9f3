#!/usr/bin/env python3
"""Generate the Kubernetes resources that repeat per service, from deployspec.py.

Five services share one shape (Deployment, Service, PodDisruptionBudget,
ServiceAccount, NetworkPolicy, ScaledObject, HPA); writing them by hand five
times is how a probe port or a security setting drifts in one of them. This
writes plain YAML that kustomize then layers (base, components, overlays);
the kustomization files themselves are hand-written.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import deployspec as spec
from _gen import ROOT, dump_yaml, header, main_for

K8S = ROOT / "deploy/k8s"
PART_OF = {"app.kubernetes.io/part-of": "mindstream"}
MONITORING_NS = "monitoring"
KAFKA_NS = "kafka"
MONGODB_NS = "mongodb"
INGRESS_NS = "ingress-nginx"
API_CLIENT_LABEL = "mindstream.dev/api-client"
PRIVATE_RANGES = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"]

Doc = dict[str, Any]


def _version() -> str:
    import tomllib

    with (ROOT / "pyproject.toml").open("rb") as f:
        version: str = tomllib.load(f)["project"]["version"]
    return version


def _labels(name: str, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/component": component, **PART_OF}


def _meta(name: str, component: str) -> Doc:
    return {"name": name, "labels": _labels(name, component)}


def _container_security() -> Doc:
    return {
        "runAsNonRoot": True,
        "runAsUser": spec.UID,
        "runAsGroup": spec.UID,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _pod_security() -> Doc:
    return {
        "runAsNonRoot": True,
        "runAsUser": spec.UID,
        "runAsGroup": spec.UID,
        "fsGroup": spec.UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _resources(r: spec.Resources) -> Doc:
    return {
        "requests": {"cpu": r.cpu_request, "memory": r.memory_request},
        "limits": {"cpu": r.cpu_limit, "memory": r.memory_limit},
    }


def _secret_env(names: tuple[str, ...]) -> list[Doc]:
    env = []
    for name in names:
        ref = spec.K8S_SECRET_ENV[name]
        key_ref: Doc = {"name": ref.secret, "key": ref.key}
        if ref.optional:
            key_ref["optional"] = True
        env.append({"name": name, "valueFrom": {"secretKeyRef": key_ref}})
    return env


def _volumes() -> list[Doc]:
    ca = spec.KAFKA_CA
    return [
        {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
        {"name": "kafka-ca", "secret": {
            "secretName": ca.secret, "optional": ca.optional,
            "items": [{"key": ca.key, "path": ca.key}],
        }},
    ]


def _mounts() -> list[Doc]:
    return [
        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - an emptyDir, the only writable path
        {"name": "kafka-ca", "mountPath": spec.KAFKA_CA_DIR, "readOnly": True},
    ]


def _probe(path: str, port: str, *, period: int, timeout: int, failures: int) -> Doc:
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": failures,
    }


def _image() -> str:
    return f"{spec.IMAGE}:{_version()}"


def deployment(s: spec.ServiceSpec) -> Doc:
    name = f"mindstream-{s.name}"
    ports = [{"name": "metrics", "containerPort": s.probe_port, "protocol": "TCP"}]
    if s.api_port is not None:
        ports.insert(0, {"name": "api", "containerPort": s.api_port, "protocol": "TCP"})
    env = [{"name": k, "value": v} for k, v in s.port_env().items()]
    env += _secret_env((*spec.CORE_SECRET_ENV, *s.secret_env))
    selector = {"app.kubernetes.io/name": name}
    spread = [
        {"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "ScheduleAnyway",
         "labelSelector": {"matchLabels": selector}}
        for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")
    ]
    container = {
        "name": s.name,
        "image": _image(),
        "imagePullPolicy": "IfNotPresent",
        "args": [s.name],
        "ports": ports,
        "envFrom": [{"configMapRef": {"name": "mindstream-config"}}],
        "env": env,
        "resources": _resources(s.resources),
        # /healthz is served only once indexes exist and the broker is up: allow a slow start.
        "startupProbe": _probe("/healthz", "metrics", period=5, timeout=2, failures=36),
        "livenessProbe": _probe("/healthz", "metrics", period=10, timeout=3, failures=3),
        "readinessProbe": _probe("/readyz", "metrics", period=5, timeout=3, failures=3),
        # Endpoints and the ingress drop the pod before SIGTERM arrives.
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(spec.PRESTOP_SLEEP_S)]}}},
        "securityContext": _container_security(),
        "volumeMounts": _mounts(),
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, s.name),
        "spec": {
            "replicas": s.replicas,
            "revisionHistoryLimit": 10,
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {
                    "labels": _labels(name, s.name),
                    "annotations": {
                        "mindstream.dev/graceful-timeout-seconds": str(spec.GRACEFUL_TIMEOUT_S)
                    },
                },
                "spec": {
                    "serviceAccountName": name,
                    "automountServiceAccountToken": False,
                    # Service links would inject KAFKA_*/MONGODB_* variables into our settings.
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": spec.TERMINATION_GRACE_S,
                    "securityContext": _pod_security(),
                    "topologySpreadConstraints": spread,
                    "containers": [container],
                    "volumes": _volumes(),
                },
            },
        },
    }


def service(s: spec.ServiceSpec) -> Doc:
    name = f"mindstream-{s.name}"
    ports = [{"name": "metrics", "port": s.probe_port, "targetPort": "metrics"}]
    if s.api_port is not None:
        ports.insert(0, {"name": "api", "port": s.api_port, "targetPort": "api"})
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, s.name),
        "spec": {"type": "ClusterIP", "selector": {"app.kubernetes.io/name": name},
                 "ports": ports},
    }


def pdb(s: spec.ServiceSpec) -> Doc:
    name = f"mindstream-{s.name}"
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(name, s.name),
        "spec": {
            # maxUnavailable, not minAvailable: a one-replica dev install can still be drained.
            "maxUnavailable": 1,
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
        },
    }


def service_account(name: str, component: str) -> Doc:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(name, component),
            "automountServiceAccountToken": False}


def _ns(name: str) -> Doc:
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}


def network_policy(s: spec.ServiceSpec) -> Doc:
    name = f"mindstream-{s.name}"
    ingress: list[Doc] = [{"from": [_ns(MONITORING_NS)],
                           "ports": [{"protocol": "TCP", "port": "metrics"}]}]
    if s.api_port is not None:
        ingress.append({
            "from": [_ns(INGRESS_NS), {"podSelector": {"matchLabels": {API_CLIENT_LABEL: "true"}}}],
            "ports": [{"protocol": "TCP", "port": "api"}],
        })
    policy: Doc = {
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": name}},
        "policyTypes": ["Ingress", "Egress"] if s.model_egress else ["Ingress"],
        "ingress": ingress,
    }
    if s.model_egress:
        policy["egress"] = [{
            "to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": PRIVATE_RANGES}}],
            "ports": [{"protocol": "TCP", "port": 443}],
        }]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": _meta(name, s.name), "spec": policy}


def shared_network_policies() -> list[Doc]:
    deny = {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": _meta("mindstream-default-deny", "network"),
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
    }
    core = {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": _meta("mindstream-core-egress", "network"),
        "spec": {
            "podSelector": {"matchLabels": PART_OF},
            "policyTypes": ["Egress"],
            "egress": [
                {"to": [{**_ns("kube-system"),
                         "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                 "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
                {"to": [_ns(KAFKA_NS)],
                 "ports": [{"protocol": "TCP", "port": 9092}, {"protocol": "TCP", "port": 9093}]},
                {"to": [_ns(MONGODB_NS)], "ports": [{"protocol": "TCP", "port": 27017}]},
                {"to": [_ns(MONITORING_NS)],
                 "ports": [{"protocol": "TCP", "port": 4317}, {"protocol": "TCP", "port": 4318}]},
            ],
        },
    }
    return [deny, core]


def provision_job() -> Doc:
    name = "mindstream-provision"
    env = _secret_env(("KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"))

    def step(step_name: str, args: list[str]) -> Doc:
        return {
            "name": step_name,
            "image": _image(),
            "imagePullPolicy": "IfNotPresent",
            "command": ["mindstream"],
            "args": args,
            "envFrom": [{"configMapRef": {"name": "mindstream-config"}}],
            "env": env,
            "resources": _resources(spec.PROVISION),
            "securityContext": _container_security(),
            "volumeMounts": _mounts(),
        }

    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta(name, "provision"),
        "spec": {
            "backoffLimit": 6,
            "activeDeadlineSeconds": 900,
            # Finished jobs disappear, so the next `kubectl apply` (new image) runs it again.
            "ttlSecondsAfterFinished": 600,
            "template": {
                "metadata": {"labels": _labels(name, "provision")},
                "spec": {
                    "serviceAccountName": name,
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "restartPolicy": "Never",
                    "securityContext": _pod_security(),
                    # Topics first (idempotent), then agent definitions onto the compacted topic.
                    "initContainers": [step("topics", ["topics", "apply"])],
                    "containers": [step("agents", ["agents", "apply", "-f", "/app/agents"])],
                    "volumes": _volumes(),
                },
            },
        },
    }


def scaled_objects() -> list[Doc]:
    auth = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "TriggerAuthentication",
        "metadata": _meta("mindstream-kafka", "autoscaling"),
        "spec": {"secretTargetRef": [
            {"parameter": "username", "name": "mindstream-kafka", "key": "sasl-username"},
            {"parameter": "password", "name": "mindstream-kafka", "key": "sasl-password"},
            {"parameter": "ca", "name": "mindstream-kafka", "key": "ca.crt"},
        ]},
    }
    docs = [auth]
    for s in spec.SERVICES:
        name = f"mindstream-{s.name}"
        docs.append({
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": _meta(name, s.name),
            "spec": {
                "scaleTargetRef": {"name": name},
                "minReplicaCount": 2,
                "maxReplicaCount": s.max_replicas,
                "pollingInterval": 15,
                "cooldownPeriod": 300,
                "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {
                    "scaleDown": {"stabilizationWindowSeconds": 300,
                                  "policies": [{"type": "Pods", "value": 1,
                                                "periodSeconds": 60}]},
                }}},
                # One trigger per (group, topic): services keep a group per topic.
                "triggers": [{
                    "type": "kafka",
                    "authenticationRef": {"name": "mindstream-kafka"},
                    "metadata": {
                        # Read from the Deployment's env (the ConfigMap): one source.
                        "bootstrapServersFromEnv": "KAFKA_BOOTSTRAP_SERVERS",
                        "consumerGroup": group,
                        "topic": topic,
                        "lagThreshold": str(s.lag_threshold),
                        "offsetResetPolicy": "earliest",
                        "allowIdleConsumers": "false",
                        "sasl": "scram_sha512",
                        "tls": "enable",
                    },
                } for group, topic in s.groups],
            },
        })
    return docs


def hpas() -> list[Doc]:
    return [{
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(f"mindstream-{s.name}", s.name),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                               "name": f"mindstream-{s.name}"},
            "minReplicas": 2,
            "maxReplicas": s.max_replicas,
            "metrics": [{"type": "Resource", "resource": {
                "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
        },
    } for s in spec.SERVICES]


def service_monitor() -> Doc:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": _meta("mindstream", "monitoring"),
        "spec": {
            "selector": {"matchLabels": PART_OF},
            "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "15s",
                           "scrapeTimeout": "10s"}],
        },
    }


def render() -> dict[Path, str]:
    me = "gen_k8s.py"
    src = "deploy/tools/deployspec.py"
    files: dict[Path, str] = {}
    for s in spec.SERVICES:
        docs = [service_account(f"mindstream-{s.name}", s.name), deployment(s), service(s),
                pdb(s), network_policy(s)]
        files[K8S / f"base/services/{s.name}.yaml"] = header(me, src) + dump_yaml(*docs)
    files[K8S / "base/network-policies.yaml"] = header(me, src) + dump_yaml(
        *shared_network_policies())
    files[K8S / "base/provision-job.yaml"] = header(me, src) + dump_yaml(
        service_account("mindstream-provision", "provision"), provision_job())
    files[K8S / "components/keda/scaledobjects.yaml"] = header(me, src) + dump_yaml(
        *scaled_objects())
    files[K8S / "components/hpa-cpu/hpas.yaml"] = header(me, src) + dump_yaml(*hpas())
    files[K8S / "components/monitoring/servicemonitor.yaml"] = header(me, src) + dump_yaml(
        service_monitor())
    return files


if __name__ == "__main__":
    sys.exit(main_for(__doc__.splitlines()[0], render))
