"""``mindstream bench`` in a reduced form on the real system: every phase runs, the results
file has every section, and no run is lost. No timing is asserted (machines differ)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mindstream.bench import SMOKE, BenchPaths, run_bench
from mindstream.bench.report import SECTIONS
from tests.infra import Infra

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


async def test_bench_smoke_writes_every_section_and_loses_nothing(infra: Infra, tmp_path: Path) -> None:
    lines: list[str] = []
    paths = BenchPaths(bootstrap=infra.kafka_bootstrap, mongo_uri=infra.mongo_uri,
                       out_dir=tmp_path / "results", work_dir=tmp_path / "work")

    report, json_path, png_path = await run_bench(SMOKE, paths, say=lines.append)

    written = json.loads(json_path.read_text())
    assert set(SECTIONS) <= set(written)
    assert png_path.read_bytes().startswith(b"\x89PNG")
    for phase in ("throughput", "scaling"):
        section = written[phase]
        assert section["steps"], phase
        assert section["completeness"]["ok"], section["completeness"]
        assert section["completeness"]["lost"] == 0
        assert section["completeness"]["submitted"] == sum(s["submitted"] for s in section["steps"]) + (
            written["latency"]["answer"]["runs"] + written["latency"]["tool"]["runs"]
            if phase == "throughput" else 0)
        assert not section["services_died"]
    assert written["scaling"]["replicas"] == 2
    for kind in ("answer", "tool"):
        assert written["latency"][kind]["statuses"] == {"completed": written["latency"][kind]["runs"]}
        assert written["latency"][kind]["stages"], kind
        assert 1 <= written["floor"][kind]["relay_ms"]["count"] <= SMOKE.floor_samples
    assert {"reasoning-1", "memory-1", "tools-1"} <= set(written["memory"]["idle_mib"])
    assert len(written["targets"]) == 3
    assert any("phase: floor" in line for line in lines)
    assert report["mode"] == "smoke"
