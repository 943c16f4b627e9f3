"""The telemetry service's one collection, ``metrics_rollups``, and its indexes as data.

Retention is a TTL index on ``expires_at`` (each document carries its own
expiry: its minute plus the configured retention). On servers without TTL
indexes (FerretDB) the service runtime expires the same documents by sweeping
(:func:`shared.mongo.sweep_expired`), so retention holds on both.
"""

from __future__ import annotations

from shared.mongo import IndexSpec

__all__ = ["INDEXES", "ROLLUPS", "TTL_INDEX"]

ROLLUPS = "metrics_rollups"
TTL_INDEX = IndexSpec([("expires_at", 1)], name="ttl_expires_at", expire_after_seconds=0)
INDEXES: dict[str, list[IndexSpec]] = {
    ROLLUPS: [IndexSpec([("agent", 1), ("minute", 1)], name="agent_minute"), TTL_INDEX],
}
