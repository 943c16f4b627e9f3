"""How long and how hard each phase pushes: the full bench, ``--quick``, and the test's smoke form."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

__all__ = ["FULL", "QUICK", "SMOKE", "BenchConfig"]


@dataclass(frozen=True)
class BenchConfig:
    mode: str
    latency_runs: int  # per agent, one at a time
    latency_max_s: float  # per agent: stop earlier if the runs take this long
    warmup_runs: int  # per agent, before anything is measured
    floor_samples: int
    rates: tuple[float, ...]  # the offered-load ladder (runs/s), climbed until p99 > bound
    step_s: float  # duration of each open-loop step
    phase_budget_s: float  # a throughput phase stops climbing when it would exceed this
    bound_ms: float = 250.0  # the p99 a sustained rate must stay under
    bisect: bool = True  # one extra step between the last good and the first bad rate
    partitions: int = 12  # session-keyed topics, one replica per service
    scaling: bool = True
    scaling_replicas: int = 2
    scaling_partitions: int = 24
    run_timeout_s: float = 60.0  # a run not answered by then counts as a timeout
    rss_interval_s: float = 0.5
    warmup_burst: int = 20  # runs submitted within one second after the warm-up runs (0: none)
    floor_warmup: int = 5  # unmeasured round trips before the floor's samples
    floor_max_s: float = 15.0  # per measurement: fewer samples if they take longer
    idle_cpu_s: float = 5.0  # how long idle CPU is sampled before load
    latency_gap_s: float = 0.05  # pause between runs measured one at a time
    db_profile: bool = True  # count each service's database commands (bench/dbprofile)
    descend_steps: int = 3  # if the first rate is too much, halve it up to this many times
    # Each service its own database, as the architecture has it (no service reads another's
    # collections). On MongoDB this changes nothing; on FerretDB/SQLite a database is one
    # file with one writer at a time, so one shared database queues every service's writes
    # behind the others' (after-reply work included). False: one database for all.
    db_per_service: bool = True

    def __post_init__(self) -> None:
        if not self.rates or any(r <= 0 for r in self.rates) or list(self.rates) != sorted(self.rates):
            raise ValueError("rates must be positive and ascending")
        if self.latency_runs < 1 or self.floor_samples < 1 or self.step_s <= 0:
            raise ValueError("latency_runs, floor_samples and step_s must be positive")
        if self.scaling_replicas < 1 or self.partitions < 1 or self.scaling_partitions < 1:
            raise ValueError("replicas and partitions must be at least 1")

    def with_overrides(self, **changes: Any) -> BenchConfig:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def as_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


FULL = BenchConfig(
    mode="full", latency_runs=200, latency_max_s=40.0, warmup_runs=10, floor_samples=200,
    rates=(5, 10, 25, 50, 75, 100, 130, 160, 200, 250, 300, 400, 500), step_s=10.0,
    phase_budget_s=130.0, run_timeout_s=30.0,
)
QUICK = BenchConfig(
    mode="quick", latency_runs=40, latency_max_s=10.0, warmup_runs=4, floor_samples=40,
    rates=(5, 20, 50, 100, 200, 400), step_s=3.0, phase_budget_s=25.0, bisect=False,
    floor_max_s=4.0, idle_cpu_s=2.0,
)
SMOKE = BenchConfig(
    mode="smoke", latency_runs=3, latency_max_s=10.0, warmup_runs=1, floor_samples=3,
    rates=(2.0, 4.0), step_s=1.0, phase_budget_s=15.0, bisect=False, partitions=3,
    scaling_partitions=4, run_timeout_s=30.0, warmup_burst=0, floor_warmup=1,
    floor_max_s=3.0, idle_cpu_s=1.0, descend_steps=0,
)
