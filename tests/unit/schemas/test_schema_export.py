from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from schemas.compat import check_snapshots, contract_path, snapshot_all
from schemas.export import check_all, default_root, export_all
from schemas.topics import TOPICS

pytestmark = pytest.mark.unit


def test_committed_files_are_in_sync() -> None:
    assert check_all(default_root()) == []


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    shutil.copytree(default_root() / "schemas" / "contracts", tmp_path / "schemas" / "contracts")
    return tmp_path


def test_export_writes_every_file_and_check_sees_drift(tree: Path) -> None:
    assert any("missing" in p for p in check_all(tree))
    written = export_all(tree)
    assert len(written) == len(TOPICS) + 1
    assert check_all(tree) == []
    for path in written:
        committed = default_root() / path.relative_to(tree)
        assert path.read_text() == committed.read_text()
        assert path.read_text().endswith("}\n") or path.suffix == ".yaml"

    schema_file = written[0]
    schema_file.write_text(schema_file.read_text().replace('"maxLength"', '"maxlength"', 1))
    stale = tree / "schemas" / "published" / "jsonschema" / "mindstream.old.v1.json"
    stale.write_text("{}\n")
    problems = check_all(tree)
    assert any("out of date" in p and schema_file.name in p for p in problems)
    assert any("mindstream.old.v1.json" in p for p in problems)
    export_all(tree)
    assert not stale.exists()
    assert check_all(tree) == []


def test_asyncapi_document_shape(tree: Path) -> None:
    export_all(tree)
    doc = yaml.safe_load((tree / "schemas" / "published" / "asyncapi.yaml").read_text())
    assert doc["asyncapi"] == "3.0.0"
    addresses = {c["address"] for c in doc["channels"].values()}
    for spec in TOPICS:
        assert {spec.name, spec.dlq} <= addresses
        message = doc["components"]["messages"][spec.message.__name__]
        assert message["headers"]["properties"]["ce_type"]["const"] == spec.message.ce_type
        assert "ce_id" in message["headers"]["required"]
        payload = tree / "schemas" / "published" / message["payload"]["$ref"]
        assert json.loads(payload.read_text())["x-ce-type"] == spec.message.ce_type
    agents = next(c for c in doc["channels"].values() if c["address"] == "mindstream.agents.v1")
    assert agents["bindings"]["kafka"]["topicConfiguration"]["cleanup.policy"] == ["compact"]


def test_snapshots_are_frozen_unless_overwritten(tree: Path) -> None:
    assert check_snapshots(tree) == []
    assert snapshot_all(tree) == []  # all exist: nothing rewritten
    path = contract_path(tree, TOPICS[0].name)
    path.unlink()
    assert any("no committed contract snapshot" in p for p in check_all(tree))
    assert snapshot_all(tree) == [path]
    assert check_snapshots(tree) == []
