"""Fixtures for the deploy checks: the generators' folder on sys.path, rendered overlays.

Rendering shells out to the pinned kustomize (installed on first use by
deploy/tools/install-checkers.sh into .cache/), once per test session and
worker, so the whole folder runs in a few seconds after the first install.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

TOOLS = Path(__file__).resolve().parents[3] / "deploy/tools"
if str(TOOLS) not in sys.path:
    sys.path.insert(0, str(TOOLS))

import checks  # noqa: E402

Docs = list[dict[str, Any]]


@pytest.fixture(scope="session")
def rendered_text() -> dict[str, str]:
    return {target: checks.render(target) for target in (*checks.OVERLAYS, "strimzi")}


@pytest.fixture(scope="session")
def rendered(rendered_text: dict[str, str]) -> dict[str, Docs]:
    return {target: [d for d in yaml.safe_load_all(text) if d]
            for target, text in rendered_text.items()}


@pytest.fixture(scope="session")
def validation(rendered_text: dict[str, str], tmp_path_factory: pytest.TempPathFactory,
               ) -> dict[tuple[str, str], list[dict[str, str]]]:
    """kubeconform results per (target, Kubernetes version): one run per version."""
    folder = tmp_path_factory.mktemp("rendered")
    files = {}
    for target, text in rendered_text.items():
        files[target] = folder / f"{target}.yaml"
        files[target].write_text(text)
    results: dict[tuple[str, str], list[dict[str, str]]] = {}
    for version in checks.versions()["KUBE_VERSIONS"].split():
        for resource in checks.kubeconform(list(files.values()), version):
            target = Path(resource["filename"]).stem
            results.setdefault((target, version), []).append(resource)
    return results


def by_kind(docs: Docs, kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}
