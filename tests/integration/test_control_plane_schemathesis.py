"""Property-based API test: schemathesis draws requests from the published OpenAPI
document (valid and invalid ones) and sends them, with an admin token, to the real
server; no answer may be a 5xx."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import pytest

from services.control_plane.openapi import SPEC_PATH
from shared.settings import KafkaSettings, MongoSettings
from tests.support.control_plane import (
    BOOTSTRAP,
    running_control_plane,
)

schemathesis = pytest.importorskip("schemathesis")
hypothesis = pytest.importorskip("hypothesis")

pytestmark = pytest.mark.integration

MAX_EXAMPLES = 8


def fuzz(base_url: str, statuses: Counter[int]) -> list[str]:
    """Runs in a worker thread: requests block, the server runs on the test's loop."""
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_dict(json.loads(SPEC_PATH.read_text()))
    failures: list[str] = []
    headers = {"Authorization": f"Bearer {BOOTSTRAP}"}
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            response = case.call(base_url=base_url, headers=headers, timeout=10)
            statuses[response.status_code // 100 * 100] += 1
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: {response.status_code} "
                                f"{response.text[:300]}")

        check()
    return failures


async def test_no_server_errors_on_generated_requests(
    topics: KafkaSettings, mongo_settings: MongoSettings,
) -> None:
    async with running_control_plane(topics, mongo_settings) as cp:
        base_url = f"http://127.0.0.1:{cp.plane.server.port}"
        statuses: Counter[int] = Counter()
        failures = await asyncio.wait_for(asyncio.to_thread(fuzz, base_url, statuses), 120)
    assert not failures, "\n".join(failures[:10])
    assert statuses[200] > 20, f"too few requests got through: {statuses}"
