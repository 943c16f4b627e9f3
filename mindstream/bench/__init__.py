"""``mindstream bench``: latency, floor, throughput, scaling and memory of the running system.

The phases live in :mod:`mindstream.bench.runner`; the pure parts (statistics,
stage timelines, the report and its plot) are separate modules with unit tests.
"""

from mindstream.bench.config import FULL, QUICK, SMOKE, BenchConfig
from mindstream.bench.runner import BenchPaths, run_bench

__all__ = ["FULL", "QUICK", "SMOKE", "BenchConfig", "BenchPaths", "run_bench"]
