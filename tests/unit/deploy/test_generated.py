"""Generated deploy files match their sources; the generators refuse bad input."""

from __future__ import annotations

from pathlib import Path

import deployspec
import gen_config
import gen_k8s
import gen_kafkatopics
import gen_prometheusrule
import pytest
import yaml
from _gen import sync

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("generator", [gen_config, gen_k8s, gen_kafkatopics, gen_prometheusrule],
                         ids=lambda g: g.__name__)
def test_generated_files_are_up_to_date(generator: object) -> None:
    stale = sync(generator.render(), check=True)  # type: ignore[attr-defined]
    assert not stale, f"out of date, run python deploy/tools/{generator.__name__}.py: {stale}"  # type: ignore[attr-defined]


def test_check_mode_reports_drift_and_writes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "x.yaml"
    target.write_text("old\n")
    assert sync({target: "new\n"}, check=True) == [target]
    assert target.read_text() == "old\n"
    assert sync({target: "new\n"}, check=False) == [target]
    assert sync({target: "new\n"}, check=True) == []


def test_kafkatopics_cover_every_registered_topic_and_its_dlq() -> None:
    from schemas.topics import TOPICS

    docs = gen_kafkatopics.topics()
    names = {d["spec"]["topicName"] for d in docs}
    assert names == {s.name for s in TOPICS} | {s.dlq for s in TOPICS}
    for spec in TOPICS:
        (doc,) = [d for d in docs if d["spec"]["topicName"] == spec.name]
        assert doc["spec"]["partitions"] == spec.partitions
        assert doc["spec"]["config"]["cleanup.policy"] == spec.cleanup_policy
        assert doc["spec"]["config"]["retention.ms"] == str(spec.retention_ms)
        assert doc["spec"]["replicas"] == 3
        assert doc["spec"]["config"]["min.insync.replicas"] == "2"
        assert doc["metadata"]["labels"]["strimzi.io/cluster"] == gen_kafkatopics.CLUSTER


def test_prometheusrule_carries_alerts_yml_groups_unchanged() -> None:
    source = yaml.safe_load(gen_prometheusrule.SOURCE.read_text())
    assert gen_prometheusrule.rule()["spec"]["groups"] == source["groups"]


@pytest.mark.parametrize("text", ["groups: []\n", "rules: []\n", "groups:\n  - rules: []\n"])
def test_prometheusrule_generator_rejects_rule_files_without_groups(
    tmp_path: Path, text: str
) -> None:
    source = tmp_path / "alerts.yml"
    source.write_text(text)
    with pytest.raises(ValueError, match="group"):
        gen_prometheusrule.rule(source)


def test_config_generator_rejects_unknown_and_secret_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(deployspec.TARGET_ENV, "k8s", {"MINDSTREAM_NO_SUCH_SETTING": "1"})
    with pytest.raises(ValueError, match="no settings class reads MINDSTREAM_NO_SUCH_SETTING"):
        gen_config.target_env("k8s")
    monkeypatch.setitem(deployspec.TARGET_ENV, "k8s", {"MONGODB_URI": "mongodb://db"})
    with pytest.raises(ValueError, match="must not carry secrets: MONGODB_URI"):
        gen_config.target_env("k8s")
    monkeypatch.setitem(deployspec.TARGET_ENV, "compose", {"MONGODB_URI": "mongodb://u:p@db"})
    with pytest.raises(ValueError, match="carries credentials"):
        gen_config.target_env("compose")
