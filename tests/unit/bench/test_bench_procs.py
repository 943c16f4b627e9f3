"""/proc parsing for memory and CPU, and CPU shares between two samples."""

from __future__ import annotations

import os

import pytest

from mindstream.bench.machine import parse_cpu_model, parse_mem_total_mib
from mindstream.bench.procs import (
    CpuSample,
    cpu_seconds,
    parse_cpu_ticks,
    parse_machine_busy,
    parse_vmrss_kib,
    rss_mib,
    usage_between,
)

pytestmark = pytest.mark.unit


def test_vmrss_is_read_from_status() -> None:
    text = "Name:\tpython\nVmPeak:\t  9000 kB\nVmRSS:\t   51234 kB\nThreads: 3\n"
    assert parse_vmrss_kib(text) == 51234
    assert parse_vmrss_kib("Name:\tzombie\nState:\tZ\n") is None


def test_cpu_ticks_skip_a_command_name_with_spaces_and_parens() -> None:
    stat = "123 (my (odd) name) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0 100"
    assert parse_cpu_ticks(stat) == 300


def test_machine_busy_excludes_idle_and_iowait() -> None:
    busy, total = parse_machine_busy("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\n")
    assert (busy, total) == (150.0, 1000.0)
    with pytest.raises(ValueError, match="no cpu line"):
        parse_machine_busy("intr 1 2 3\n")


def test_this_process_is_measurable() -> None:
    assert (rss_mib(os.getpid()) or 0) > 1
    assert cpu_seconds(os.getpid()) is not None
    assert rss_mib(2**31 - 1) is None


def test_usage_between_reports_cores_and_other_work() -> None:
    a = CpuSample(10.0, {"svc": 1.0, "gone": 1.0}, 100.0)
    b = CpuSample(12.0, {"svc": 2.0, "new": 5.0}, 103.0)
    used = usage_between(a, b)
    assert used == {"svc": 0.5, "machine": 1.5, "other": 1.0}
    assert usage_between(b, a) == {}


def test_machine_parsers() -> None:
    assert parse_cpu_model("processor\t: 0\nmodel name\t: Fancy CPU @ 3GHz\n") == "Fancy CPU @ 3GHz"
    assert parse_cpu_model("") == "unknown"
    assert parse_mem_total_mib("MemTotal:       2048000 kB\n") == 2000
    assert parse_mem_total_mib("") is None


def test_cpu_per_run_excludes_the_load_generator_from_the_total() -> None:
    from mindstream.bench.procs import cpu_ms_per_run

    a = CpuSample(0.0, {"reasoning-1": 1.0, "mongo-server": 2.0, "bench-client": 0.0}, 0.0)
    b = CpuSample(5.0, {"reasoning-1": 1.5, "mongo-server": 3.0, "bench-client": 0.4}, 4.0)
    per_run = cpu_ms_per_run(a, b, runs=100)
    assert per_run == {"reasoning-1": 5.0, "mongo-server": 10.0, "bench-client": 4.0, "total": 15.0}
    assert cpu_ms_per_run(a, b, runs=0) == {}


def test_net_of_idle_subtracts_the_idle_share() -> None:
    from mindstream.bench.procs import net_of_idle

    per_run = {"telemetry-1": 30.0, "reasoning-1": 10.0, "bench-client": 1.0, "total": 41.0}
    net = net_of_idle(per_run, {"telemetry-1": 0.05}, elapsed_s=40.0, runs=100)
    assert net == {"telemetry-1": 10.0, "reasoning-1": 10.0, "bench-client": 1.0, "total": 20.0}
    assert net_of_idle(per_run, {"reasoning-1": 1.0}, 10.0, 1)["reasoning-1"] == 0.0
    assert net_of_idle(per_run, {}, 1.0, 0) == {}
