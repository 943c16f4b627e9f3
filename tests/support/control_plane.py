"""Running the control plane in-process for tests, and waiting on its audit log."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import SecretStr

from services.control_plane.app import ControlPlane, build_control_plane
from services.control_plane.settings import ControlPlaneSettings
from services.control_plane.store import AUDIT_LOG
from shared.settings import KafkaSettings, MongoSettings
from tests.support.waiting import eventually

BOOTSTRAP = "test-bootstrap-token-0123456789abcdef"


@dataclass
class Running:
    plane: ControlPlane
    http: httpx.AsyncClient

    @property
    def db(self) -> Any:
        return self.plane.runtime.db

    def auth(self, token: str = BOOTSTRAP) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    async def token(self, scope: str, name: str = "t") -> tuple[str, str]:
        """(token id, token) of a fresh token made through the API with the bootstrap token."""
        answer = await self.http.post("/api/v1/tokens", json={"name": name, "scope": scope},
                                      headers=self.auth())
        assert answer.status_code == 201, answer.text
        body = answer.json()
        return body["id"], body["token"]

    async def eventually(self, fetch: Callable[[], Awaitable[httpx.Response]],
                         ready: Callable[[Any], Any], timeout_s: float = 20.0) -> Any:
        """Poll an API read until ``ready`` holds for its JSON body (views are eventual)."""
        async def body_when_ready() -> Any:
            body = (await fetch()).json()
            return (body,) if ready(body) else None

        (body,) = await eventually(body_when_ready, what="API read ready", timeout_s=timeout_s)
        return body

    async def audit_records(self, predicate: Callable[[dict[str, Any]], bool] = lambda r: True,
                            ) -> list[dict[str, Any]]:
        return [r async for r in self.db[AUDIT_LOG].find({}).sort("seq", 1) if predicate(r)]

    async def wait_audit(self, count: int, predicate: Callable[[dict[str, Any]], bool],
                         timeout_s: float = 20.0) -> list[dict[str, Any]]:
        """Wait until at least ``count`` matching records are in the log.

        The log is in MongoDB, which offers no change stream on FerretDB, so this
        polls; the caller then asserts the exact count.
        """
        async def enough() -> list[dict[str, Any]] | None:
            found = await self.audit_records(predicate)
            return found if len(found) >= count else None

        return await eventually(enough, what=f"{count} audit records", timeout_s=timeout_s)


@asynccontextmanager
async def running_control_plane(kafka: KafkaSettings, mongo: MongoSettings, **settings: Any,
                                ) -> AsyncIterator[Running]:
    config = ControlPlaneSettings(http_port=0, probe_port=0,
                                  bootstrap_token=SecretStr(BOOTSTRAP), **settings)
    plane = build_control_plane(config, kafka, mongo)
    async with plane.runtime:
        transport = httpx.ASGITransport(app=plane.api, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://control-plane") as http:
            yield Running(plane, http)


def by_action(action: str, **fields: Any) -> Callable[[dict[str, Any]], bool]:
    def match(record: dict[str, Any]) -> bool:
        return record["action"] == action and all(record.get(k) == v for k, v in fields.items())
    return match

