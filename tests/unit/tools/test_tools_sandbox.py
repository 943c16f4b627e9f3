"""Sandboxed tools run in a limited subprocess; whatever they do, the service goes on."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.tools.executor import ExecutionRequest, Executor
from services.tools.registry import ToolRegistry
from services.tools.sandbox import sandbox_env
from tests.unit.tools import tools_sandbox_fixtures as fx

pytestmark = pytest.mark.unit

ALL = [
    fx.double,
    fx.async_double,
    fx.hard_exit,
    fx.hog_memory,
    fx.spin,
    fx.chatty,
    fx.sleep_forever,
    fx.environment,
    fx.flaky,
    fx.refuse,
    fx.buggy,
]


@pytest.fixture
def executor() -> Executor:
    return Executor(ToolRegistry(ALL), breaker_failure_threshold=100)


def call(
    name: str, arguments: dict[str, Any] | None = None, seconds: float = 20
) -> ExecutionRequest:
    return ExecutionRequest(
        call_id=f"call-{name}",
        tool=name,
        arguments=arguments or {},
        agent_allowlist=[t.__mindstream_tool__.name for t in ALL],  # type: ignore[attr-defined]
        deadline=datetime.now(UTC) + timedelta(seconds=seconds),
    )


async def test_result_comes_back_and_prints_do_not_corrupt_it(executor: Executor) -> None:
    outcome = await executor.execute(call("double", {"x": 21}))
    assert outcome.ok, outcome
    assert outcome.content["result"] == 42
    assert outcome.content["pid"] != os.getpid()
    assert (await executor.execute(call("async_double", {"x": 4}))).content == 8


async def test_crashes_and_limits_are_outcomes_and_the_service_keeps_serving(
    executor: Executor,
) -> None:
    """All failure modes at once (which also keeps this test fast)."""
    expected = {
        "hard_exit": ("sandbox_crashed", "exited with code 3"),
        "hog_memory": ("resource_limit", "memory"),
        "spin": ("resource_limit", "CPU"),
        "chatty": ("resource_limit", "more than 2048 bytes"),
    }
    outcomes = await asyncio.gather(*(executor.execute(call(name)) for name in expected))
    for (name, (code, text)), outcome in zip(expected.items(), outcomes, strict=True):
        assert outcome.error_code == code, (name, outcome)
        assert text in (outcome.error_message or ""), (name, outcome)
    assert (await executor.execute(call("double", {"x": 1}))).content["result"] == 2


async def test_deadline_kills_the_process(executor: Executor, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    outcome = await executor.execute(
        call("sleep_forever", {"pid_file": str(pid_file)}, seconds=0.7)
    )
    assert outcome.error_code == "timeout"
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped, not left behind


async def test_environment_is_scrubbed(executor: Executor, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-1")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp-secret-2")
    monkeypatch.setenv("DB_PASSWORD", "secret-3")
    monkeypatch.setenv("MONGODB_URI", "mongodb://user:secret-4@db")
    outcome = await executor.execute(call("environment"))
    assert outcome.ok, outcome
    env: dict[str, str] = outcome.content
    assert set(env) <= {*sandbox_env(), "HOME", "TMPDIR", "LC_CTYPE"}
    assert not any("secret" in value for value in env.values())


def test_sandbox_env_is_built_from_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOME_SERVICE_KEY", "k")
    env = sandbox_env()
    assert set(env) == {
        "PATH",
        "LANG",
        "PYTHONPATH",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONIOENCODING",
        "PYTHONUNBUFFERED",
    }


async def test_transient_errors_in_the_sandbox_are_retried(
    executor: Executor, tmp_path: Path
) -> None:
    outcome = await executor.execute(call("flaky", {"marker_dir": str(tmp_path)}))
    assert outcome.ok, outcome
    assert outcome.content == "third time lucky"
    assert outcome.attempts == 3


async def test_refusals_and_bugs_are_reported(executor: Executor) -> None:
    refused = await executor.execute(call("refuse"))
    assert refused.error_code == "tool_failed"
    assert refused.error_message == "bad input: try a smaller number"
    bug = await executor.execute(call("buggy"))
    assert bug.error_code == "sandbox_crashed"
    assert "KeyError" in (bug.error_message or "")
