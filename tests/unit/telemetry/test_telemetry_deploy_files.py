"""Dashboards and alert rules reference only metrics that some service really exports."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.telemetry.catalogue import (
    load_service_metrics,
    recording_rule_refs,
    referenced_metric_names,
    service_metric_modules,
)
from shared.observability.metrics import exported_metric_names

pytestmark = pytest.mark.unit

DEPLOY = Path(__file__).resolve().parents[3] / "deploy" / "observability"
FILES = [
    DEPLOY / "prometheus.yml",
    DEPLOY / "alerts.yml",
    DEPLOY / "grafana" / "dashboards" / "mindstream.json",
    DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml",
    DEPLOY / "grafana" / "provisioning" / "dashboards" / "mindstream.yml",
]


def strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, item in node.items():
            yield from strings(key)
            yield from strings(item)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


def load(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)


def test_the_service_metric_modules_are_found_and_import() -> None:
    modules = load_service_metrics()
    assert modules == service_metric_modules()
    assert "services.telemetry.metrics" in modules
    assert "services.telemetry.catalogue" not in modules  # mentions, does not declare


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_referenced_metric_is_exported(path: Path) -> None:
    load_service_metrics()
    used = referenced_metric_names(strings(load(path)))
    unknown = sorted(used - exported_metric_names())
    assert not unknown, f"{path.name} uses metrics nobody exports: {unknown}"


def test_the_checker_sees_names_inside_promql() -> None:
    expr = ('histogram_quantile(0.99, sum by (le) (rate(mindstream_run_end_to_end_seconds_bucket'
            '{agent=~"$agent"}[5m]))) / mindstream:run_error_ratio:rate5m + up{job="mindstream-x"}')
    assert referenced_metric_names([expr]) == {"mindstream_run_end_to_end_seconds_bucket"}
    assert recording_rule_refs([expr]) == {"mindstream:run_error_ratio:rate5m"}
    assert referenced_metric_names(["mindstream_nonexistent_total"]) - exported_metric_names()


def test_dashboard_and_alerts_cover_the_promised_signals() -> None:
    dashboard = load(DEPLOY / "grafana" / "dashboards" / "mindstream.json")
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p.get("targets", []))
    for metric in ("mindstream_runs_total", "mindstream_run_end_to_end_seconds_bucket",
                   "mindstream_model_tokens_total", "mindstream_model_cost_total",
                   "mindstream_consumer_lag", "mindstream_dead_letter_messages",
                   "mindstream_stage_duration_seconds_bucket"):
        assert metric in exprs
    alerts = load(DEPLOY / "alerts.yml")
    names = {r["alert"] for g in alerts["groups"] for r in g["rules"] if "alert" in r}
    assert {"MindstreamErrorBudgetBurnFast", "MindstreamErrorBudgetBurnSlow",
            "MindstreamRunLatencyP99High", "MindstreamConsumerLagGrowing",
            "MindstreamDeadLetters", "MindstreamCircuitBreakerOpen"} <= names
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_recording_rules_used_are_defined() -> None:
    alerts = load(DEPLOY / "alerts.yml")
    dashboard = load(DEPLOY / "grafana" / "dashboards" / "mindstream.json")
    recorded = {r["record"] for g in alerts["groups"] for r in g["rules"] if "record" in r}
    used = recording_rule_refs(strings(alerts)) | recording_rule_refs(strings(dashboard))
    assert used <= recorded


def test_prometheus_scrapes_all_five_services() -> None:
    config = load(DEPLOY / "prometheus.yml")
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert {f"mindstream-{s}" for s in
            ("reasoning", "tools", "memory", "telemetry", "control-plane")} <= jobs
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
