"""The telemetry service's errors, and what happens to the message that raised them.

::

    TelemetryError                 root; never raised itself
    └── RollupWriteError           MongoDB refused a rollup write: retried, then dead-lettered

Telemetry is a reader: a message it cannot fully interpret (missing data
keys, unknown model) is counted as far as it can be, never dead-lettered
for being odd; the producing service already validated its contract. A bad
setting (price table...) is refused at start with one line, exit code 2.
"""

from __future__ import annotations

from shared.errors import MindstreamError, TransientError

__all__ = ["RollupWriteError", "TelemetryError"]


class TelemetryError(MindstreamError):
    """Root of the telemetry service's errors."""


class RollupWriteError(TelemetryError, TransientError):
    """A rollup upsert failed for a reason other than a duplicate; the pipeline retries it."""

