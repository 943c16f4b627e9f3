"""Where a bench run talks to and writes to, and how it reports progress."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from shared.settings import KafkaSettings

__all__ = ["BenchPaths", "Say"]

Say = Callable[[str], None]


@dataclass(frozen=True)
class BenchPaths:
    """Where the bench talks to and writes to."""

    bootstrap: str
    mongo_uri: str
    out_dir: Path  # results (JSON, PNG)
    work_dir: Path  # service logs and pid files of this run
    infra_pids: Mapping[str, int] = field(default_factory=dict)  # broker, database (for CPU/RSS)
    kafka_version: str | None = None
    latest_png: Path | None = None  # also copy the plot here (full runs)
    # The services' producer linger (KAFKA_LINGER_MS); the floor's producers use the same.
    linger_ms: int = field(default_factory=lambda: int(KafkaSettings.model_fields["linger_ms"].default))
