"""The FastAPI application: routers under ``/api/v1``, problem details, the dashboard at ``/``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, Response

from services.control_plane.api.context import ApiContext
from services.control_plane.api.problems import PROBLEM_RESPONSES, install_problem_handlers
from services.control_plane.api.routes import (
    agents,
    audit,
    canary,
    degradation,
    evals,
    knowledge,
    memories,
    metrics,
    runs,
    sessions,
    system,
    tokens,
    workflows,
)

__all__ = ["API_PREFIX", "create_api"]

API_PREFIX = "/api/v1"
VERSION = "1.0.0"
_STATIC = Path(__file__).resolve().parent.parent / "static"


def _problems_only_as_problem_json(app: FastAPI) -> None:
    """Error answers are ``application/problem+json`` only; FastAPI would also list JSON."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = original()
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    for status, response in operation.get("responses", {}).items():
                        if status[0] in "45" and "application/problem+json" in response.get(
                                "content", {}):
                            response["content"].pop("application/json", None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_api(ctx: ApiContext | None = None) -> FastAPI:
    """The app; ``ctx`` may be None only to render the OpenAPI document."""
    app = FastAPI(
        title="mindstream control plane",
        version=VERSION,
        description="Manage agents, runs, tokens and the audit log of a mindstream system. "
                    "Every request needs a bearer token; every change is audited.",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
        responses=PROBLEM_RESPONSES,
    )
    app.state.ctx = ctx
    install_problem_handlers(app)
    api = APIRouter(prefix=API_PREFIX)
    for module in (agents, runs, workflows, sessions, memories, knowledge, audit, metrics, tokens,
                   system, evals, canary, degradation):
        api.include_router(module.router)
    app.include_router(api)

    _problems_only_as_problem_json(app)

    @app.get("/", include_in_schema=False)
    async def dashboard() -> Response:
        return FileResponse(_STATIC / "index.html", media_type="text/html")

    return app
