"""Eval results recorded by ``mindstream eval run``: the trend per agent version, and one run."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from schemas.base import Id
from services.control_plane.api.context import CallerDep, ContextDep
from services.control_plane.errors import NotFound
from services.control_plane.evals import EvalStore

router = APIRouter(prefix="/evals", tags=["evals"])


class _Out(BaseModel):
    model_config = ConfigDict(extra="ignore")


class VersionPoint(_Out):
    version: int
    pass_rate: float
    cases: int
    passed: int
    eval_id: str
    at: datetime
    evals: int = Field(description="Eval runs that exercised this version.")


class SuiteTrend(_Out):
    agent: str
    suite: str
    versions: list[VersionPoint] = Field(description="Oldest version first.")


class EvalRunOut(_Out):
    eval_id: str
    suite: str
    agent: str
    agent_ref: str
    agent_version: int | None = None
    at: datetime
    finished_at: datetime | None = None
    cases: int
    passed: int
    pass_rate: float
    p95_latency_ms: float | None = None
    tokens: int = 0
    ok: bool
    threshold_failures: list[str] = Field(default_factory=list)


class EvalsOut(_Out):
    trend: list[SuiteTrend] = Field(description="Pass rate per agent version, per suite.")
    runs: list[EvalRunOut] = Field(description="The most recent eval runs, newest first.")


class EvalCaseOut(_Out):
    case: str
    run_id: str
    passed: bool
    status: str
    agent_version: int | None = None
    reasons: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    latency_ms: float = 0.0
    tokens: int = 0


class EvalDetail(EvalRunOut):
    results: list[EvalCaseOut]


@router.get("", response_model=EvalsOut, summary="Eval trend per agent version and recent runs")
async def list_evals(
    ctx: ContextDep, caller: CallerDep,
    agent: Annotated[str | None, Query(max_length=128, description="Agent id.")] = None,
    limit: Annotated[int, Query(ge=1, le=200, description="Recent runs to list.")] = 20,
) -> EvalsOut:
    store = EvalStore(ctx.db)
    trend: list[Any] = await store.trend(agent)
    runs: list[Any] = await store.runs(agent, limit=limit)
    return EvalsOut.model_validate({"trend": trend, "runs": runs})


@router.get("/{eval_id}", response_model=EvalDetail, summary="One eval run with its cases")
async def get_eval(eval_id: Annotated[Id, Path(description="Eval run id.")], ctx: ContextDep,
                   caller: CallerDep) -> EvalDetail:
    store = EvalStore(ctx.db)
    doc = await store.run(eval_id)
    if doc is None:
        raise NotFound(f"no eval run {eval_id}")
    return EvalDetail.model_validate({**doc, "results": await store.cases(eval_id)})
