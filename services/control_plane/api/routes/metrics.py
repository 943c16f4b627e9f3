"""A metrics summary from the telemetry service's rollups (read-only).

``metrics_rollups`` is written by telemetry; reading it is the one
exception to "no service reads another's collections", granted because
rollups are telemetry's published read model for dashboards. When
telemetry offers ``services.telemetry.rollups.read_rollups`` it is used, so
the document shape stays telemetry's business.
"""

from __future__ import annotations

import importlib
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from services.control_plane.api.context import CallerDep, ContextDep
from services.control_plane.api.pagination import Limit

router = APIRouter(prefix="/metrics", tags=["metrics"])

ROLLUPS = "metrics_rollups"


class MetricsSummary(BaseModel):
    source: str
    rollups: list[dict[str, Any]]


def _reader() -> Any:
    try:
        module = importlib.import_module("services.telemetry.rollups")
    except ImportError:
        return None
    return getattr(module, "read_rollups", None)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, str | int | float | bool | datetime) or value is None:
        return value
    return str(value)


@router.get("/summary", response_model=MetricsSummary,
            summary="Per-agent, per-minute rollups: throughput, latency and cost")
async def metrics_summary(ctx: ContextDep, caller: CallerDep, limit: Limit = 200,
                          since: datetime | None = None,
                          agent: Annotated[str | None, Query(max_length=128)] = None,
                          ) -> MetricsSummary:
    """Oldest minute first; ``since`` defaults to the last hour."""
    since = since or ctx.clock() - timedelta(hours=1)
    reader = _reader()
    if reader is not None:
        rows = await reader(ctx.db, agent, since, limit=limit)
        return MetricsSummary(source="telemetry.read_rollups", rollups=[_plain(r) for r in rows])
    query: dict[str, Any] = {"minute": {"$gte": since}} | ({"agent": agent} if agent else {})
    docs = await ctx.db[ROLLUPS].find(query, {"_id": 0}).sort("minute", 1).limit(limit).to_list()
    return MetricsSummary(source=ROLLUPS, rollups=[_plain(d) for d in docs])
