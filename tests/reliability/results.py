"""The figures each scenario yields: kept in ``results/latest.json`` and shown as a table."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["RESULTS_FILE", "Results"]

RESULTS_FILE = Path(__file__).resolve().parent / "results" / "latest.json"

_COLUMNS = [
    ("scenario", "scenario", 26), ("ok", "passed", 4), ("sent", "runs_sent", 6),
    ("done", "completed", 6), ("failed", "failed", 6), ("wf done", "workflows", 8),
    ("lost", "all_lost", 5), ("dup", "all_duplicates", 4), ("2x fx", "double_side_effects", 5),
    ("order", "order_violations", 5), ("dlq?", "dead_letters_unexpected", 5),
    ("recover s", "recover_s", 9), ("time s", "duration_s", 7),
]


class Results:
    """Collected during the session; written after every scenario so a crash keeps them."""

    def __init__(self, path: Path = RESULTS_FILE) -> None:
        self.path = path
        self.scenarios: dict[str, dict[str, Any]] = {}
        self.started = time.time()

    def record(self, name: str, figures: dict[str, Any]) -> None:
        self.scenarios[name] = figures
        self.write()

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
               "suite_seconds": round(time.time() - self.started, 1),
               "scenarios": self.scenarios}
        self.path.write_text(json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n")

    def table(self) -> list[str]:
        head = " ".join(title.ljust(width) for title, _k, width in _COLUMNS)
        lines = [head, "-" * len(head)]
        for name, figures in self.scenarios.items():
            row = {**figures, "scenario": name,
                   "passed": "yes" if figures.get("passed") else "NO",
                   # runs, workflow runs and the runs their steps started, together
                   "all_lost": _total(figures, "lost", "workflows_lost",
                                      "workflow_step_runs_lost"),
                   "all_duplicates": _total(figures, "duplicate_endings",
                                            "workflow_duplicate_endings"),
                   "workflows": (f"{figures.get('workflows_completed', 0)}/"
                                 f"{figures['workflows_sent']}"
                                 if figures.get("workflows_sent") else None)}
            lines.append(" ".join(_cell(row.get(key), width) for _t, key, width in _COLUMNS))
            reasons = figures.get("failed_reasons") or {}
            for reason, count in list(reasons.items())[:4]:
                lines.append(f"    failed x{count}: {reason}")
            for note in figures.get("notes", []):
                lines.append(f"    note: {note}")
        return lines


def _total(figures: dict[str, Any], *keys: str) -> int | None:
    values = [figures[k] for k in keys if isinstance(figures.get(k), int)]
    return sum(values) if values else None


def _cell(value: Any, width: int) -> str:
    if value is None:
        text = "-"
    elif isinstance(value, float):
        text = f"{value:.1f}"
    else:
        text = str(value)
    return text[:width].ljust(width)
