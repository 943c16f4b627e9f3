#!/usr/bin/env python3
"""Generate the Prometheus-operator ``PrometheusRule`` from ``deploy/observability/alerts.yml``.

alerts.yml is the one rule file: compose mounts it into Prometheus as is, and
the operator gets the same groups wrapped in a PrometheusRule. Editing the
copy under deploy/k8s would be undone here and is caught by the drift test.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml
from _gen import ROOT, dump_yaml, header, main_for

SOURCE = ROOT / "deploy/observability/alerts.yml"
OUTPUT = ROOT / "deploy/k8s/components/monitoring/prometheusrule.yaml"


def rule(source: Path = SOURCE) -> dict[str, Any]:
    shown = source.relative_to(ROOT) if source.is_relative_to(ROOT) else source
    if not source.exists():
        raise FileNotFoundError(f"{shown} is missing (the telemetry rules)")
    loaded = yaml.safe_load(source.read_text())
    groups = loaded.get("groups") if isinstance(loaded, dict) else None
    if not isinstance(groups, list) or not groups:
        raise ValueError(f"{shown} has no rule groups")
    for group in groups:
        if not isinstance(group, dict) or "name" not in group or not group.get("rules"):
            raise ValueError(f"{shown}: every group needs a name and rules")
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "mindstream",
            "labels": {
                "app.kubernetes.io/name": "mindstream",
                "app.kubernetes.io/component": "monitoring",
                "app.kubernetes.io/part-of": "mindstream",
                # kube-prometheus-stack selects rules by its release label; set it in an overlay.
                "role": "alert-rules",
            },
        },
        "spec": {"groups": groups},
    }


def render() -> dict[Path, str]:
    text = header("gen_prometheusrule.py", "deploy/observability/alerts.yml") + dump_yaml(rule())
    return {OUTPUT: text}


if __name__ == "__main__":
    sys.exit(main_for(__doc__.splitlines()[0], render))
