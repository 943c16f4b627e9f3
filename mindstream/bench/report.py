"""The results: the sustained rate, the targets, the printed table, the files.

Everything here works on the plain JSON-ready report (dicts and lists), so a
results file written months ago can be re-read, re-tabled and re-plotted.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mindstream.bench.plot import Series, latency_chart

__all__ = [
    "SECTIONS",
    "chart",
    "clean",
    "cpu_capacity",
    "format_table",
    "is_sustained",
    "sustained_rate",
    "targets",
    "write_results",
]

SECTIONS = ("machine", "settings", "floor", "latency", "throughput", "scaling", "memory", "targets")

# Targets for a 2-core machine with the broker and database on it.
ANSWER_P50_FLOOR_RATIO = 3.0
ANSWER_P99_MS = 50.0
SUSTAINED_RUNS_PER_S = 200.0


def _num(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and value is not None else math.nan


def is_sustained(step: Mapping[str, Any], bound_ms: float) -> bool:
    """A step is sustained when every run answered, p99 stayed under the bound and
    completions kept up with arrivals (at least 90 % of the offered rate)."""
    p99 = _num(step.get("latency_ms", {}).get("p99"))
    return (
        step.get("submitted", 0) > 0
        and step.get("completed", 0) == step.get("submitted")
        and p99 <= bound_ms
        and _num(step.get("achieved_rate")) >= 0.9 * _num(step.get("offered_rate"))
    )


def sustained_rate(steps: Sequence[Mapping[str, Any]], bound_ms: float) -> float:
    """The highest offered rate that was sustained (0 when none was)."""
    return max((_num(s["offered_rate"]) for s in steps if is_sustained(s, bound_ms)), default=0.0)


def targets(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The three targets, each with what was measured and whether it was met."""
    answer = report.get("latency", {}).get("answer", {})
    p50_ratio = _num(answer.get("overhead_vs_floor", {}).get("p50_x"))
    p99 = _num(answer.get("e2e_ms", {}).get("p99"))
    sustained = _num(report.get("throughput", {}).get("sustained_runs_per_s"))
    bound = _num(report.get("settings", {}).get("bound_ms", 250.0))
    return [
        {"name": "single-answer p50 vs floor", "target": f"<= {ANSWER_P50_FLOOR_RATIO:g}x",
         "measured": round(p50_ratio, 2), "met": p50_ratio <= ANSWER_P50_FLOOR_RATIO},
        {"name": "single-answer p99 at low load", "target": f"< {ANSWER_P99_MS:g} ms",
         "measured": round(p99, 1), "met": p99 < ANSWER_P99_MS},
        {"name": f"sustained runs/s with p99 < {bound:g} ms", "target": f">= {SUSTAINED_RUNS_PER_S:g}",
         "measured": sustained, "met": sustained >= SUSTAINED_RUNS_PER_S},
    ]


def cpu_capacity(report: Mapping[str, Any]) -> float:
    """Runs/s the machine's cores could carry at the CPU cost of one answer run measured
    one at a time (every process of the system, broker and database included)."""
    answer = report.get("latency", {}).get("answer", {})
    total = _num((answer.get("cpu_ms_per_run_net") or answer.get("cpu_ms_per_run") or {}).get("total"))
    cores = _num(report.get("machine", {}).get("cores"))
    return cores * 1000 / total if total > 0 else math.nan


def _ms(summary: Mapping[str, Any], key: str) -> str:
    value = _num(summary.get(key))
    return "-" if math.isnan(value) else f"{value:.1f}"


def format_table(report: Mapping[str, Any]) -> str:
    """The short summary printed at the end of a bench run."""
    lines: list[str] = []
    machine = report.get("machine", {})
    lines.append(f"machine: {machine.get('cores')} cores, {machine.get('ram_mib')} MiB, "
                 f"{machine.get('cpu_model')}; Kafka {machine.get('kafka')}, "
                 f"Python {machine.get('python')}")
    lines.append("")
    busy = max((_num(s.get("background_cores")) for s in report.get("latency", {}).values()
                if isinstance(s, Mapping)), default=math.nan)
    if busy >= 0.25:
        lines.append(f"WARNING: other work on this machine used {busy:.2f} cores while latency was "
                     "measured; every figure below is inflated by it.")
        lines.append("")
    lines.append(f"{'latency, one run at a time':<34} {'p50':>8} {'p95':>8} {'p99':>8} "
                 f"{'floor p50':>10} {'x floor':>8}")
    for kind in ("answer", "tool"):
        section = report.get("latency", {}).get(kind)
        if not section:
            continue
        e2e, floor = section.get("e2e_ms", {}), section.get("overhead_vs_floor", {})
        ratio = _num(floor.get("p50_x"))
        lines.append(f"  {kind + ' run (ms)':<32} {_ms(e2e, 'p50'):>8} {_ms(e2e, 'p95'):>8} "
                     f"{_ms(e2e, 'p99'):>8} {_ms(floor, 'floor_p50_ms'):>10} "
                     f"{'-' if math.isnan(ratio) else f'{ratio:.1f}x':>8}")
    answer = report.get("latency", {}).get("answer", {})
    cpu = answer.get("cpu_ms_per_run_net") or answer.get("cpu_ms_per_run") or {}
    if cpu.get("total"):
        parts = sorted(((k, v) for k, v in cpu.items() if k not in ("total", "bench-client")),
                       key=lambda kv: -kv[1])
        lines.append("")
        lines.append(f"CPU per answer run, beyond idle: {cpu['total']:.1f} ms in all "
                     f"(capacity bound ~{cpu_capacity(report):.0f} runs/s on "
                     f"{report.get('machine', {}).get('cores')} cores)")
        lines.append("  " + ", ".join(f"{k} {v:.1f}" for k, v in parts if v >= 0.05))
    profile = answer.get("db_commands_per_run_by_service") or {}
    if profile.get("total"):
        by = profile.get("by_service", {})
        lines.append(f"database commands per answer run: {profile['total']:g} "
                     f"({profile.get('writes', 0):g} writes): "
                     + ", ".join(f"{k} {v['total']:g}" for k, v in
                                 sorted(by.items(), key=lambda kv: -kv[1]["total"])))
    ops = answer.get("db_commands_per_run") or {}
    if ops.get("total") and not profile.get("total"):
        detail = ", ".join(f"{k} {v:g}" for k, v in ops.items() if k != "total")
        lines.append(f"database commands per answer run (server-wide counters): {ops['total']:g} ({detail})")
    for phase in ("throughput", "scaling"):
        section = report.get(phase)
        if not section or not section.get("steps"):
            continue
        lines.append("")
        lines.append(f"{phase} ({section.get('replicas')} replica(s) per service, "
                     f"{section.get('partitions')} partitions)")
        lines.append(f"  {'offered/s':>9} {'done/s':>8} {'p50':>8} {'p95':>8} {'p99':>8} {'timeouts':>9}")
        for step in section["steps"]:
            lat = step.get("latency_ms", {})
            mark = "" if is_sustained(step, _num(section.get("bound_ms", 250.0))) else "  over"
            lines.append(f"  {step['offered_rate']:>9g} {step.get('achieved_rate', 0):>8.1f} "
                         f"{_ms(lat, 'p50'):>8} {_ms(lat, 'p95'):>8} {_ms(lat, 'p99'):>8} "
                         f"{step.get('timeouts', 0):>9}{mark}")
        done = section.get("completeness", {})
        lines.append(f"  sustained: {section.get('sustained_runs_per_s', 0):g} runs/s; "
                     f"runs checked {done.get('submitted', 0)}, lost {done.get('lost', '?')}, "
                     f"conflicting {done.get('conflicting', '?')}")
    memory = report.get("memory", {})
    if memory.get("idle_mib"):
        lines.append("")
        lines.append(f"{'memory (RSS MiB)':<24} {'idle':>8} {'load max':>9}")
        for name, idle in memory["idle_mib"].items():
            peak = memory.get("under_load_max_mib", {}).get(name)
            lines.append(f"  {name:<22} {idle:>8.1f} {peak if peak is None else f'{peak:.1f}':>9}")
    lines.append("")
    for target in report.get("targets", []):
        lines.append(f"  [{'met' if target['met'] else 'MISSED'}] {target['name']}: "
                     f"{target['measured']} (target {target['target']})")
    return "\n".join(lines)


_COLORS = {"p50": (40, 110, 200), "p95": (230, 140, 20), "p99": (40, 160, 60)}


def chart(report: Mapping[str, Any]) -> bytes:
    """The PNG: p50/p95/p99 vs offered load, solid for one replica, dashed for the scaled phase."""
    series: list[Series] = []
    for phase, dash in (("throughput", 0), ("scaling", 5)):
        section = report.get(phase) or {}
        steps = sorted(section.get("steps") or [], key=lambda s: s["offered_rate"])
        if not steps:
            continue
        replicas = section.get("replicas", 1)
        for q, color in _COLORS.items():
            pts = [(float(s["offered_rate"]), _num(s.get("latency_ms", {}).get(q))) for s in steps]
            series.append(Series(f"{q} x{replicas}", color, [p for p in pts if not math.isnan(p[1])],
                                 dash=dash))
    machine = report.get("machine", {})
    title = f"mindstream bench: latency vs load ({machine.get('cores')} cores)"
    return latency_chart(series, title=title, bound_ms=report.get("settings", {}).get("bound_ms"))


def write_results(report: Mapping[str, Any], out_dir: Path, stamp: str) -> tuple[Path, Path]:
    """``<out_dir>/<stamp>.json`` and ``<out_dir>/<stamp>.png``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"{stamp}.json"
    png_path = out_dir / f"{stamp}.png"
    json_path.write_text(json.dumps(clean(report), indent=2, allow_nan=False) + "\n")
    png_path.write_bytes(chart(report))
    return json_path, png_path


def clean(value: Any) -> Any:
    """JSON-ready: NaN and infinities become null (JSON has no NaN), tuples lists, paths text."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
