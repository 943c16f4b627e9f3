"""The executor answers every call with an outcome, under every guard."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from services.tools.errors import ToolFailedError, TransientToolError
from services.tools.executor import ExecutionOutcome, ExecutionRequest, Executor
from services.tools.registry import ToolRegistry
from shared.resilience import BreakerState, RetryPolicy

pytestmark = pytest.mark.unit

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Sleeps:
    """Records backoff waits instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def request(
    tool_name: str,
    arguments: dict[str, Any] | None = None,
    *,
    allow: Iterable[str] | None = None,
    deadline: datetime | None = None,
    approved: bool = False,
) -> ExecutionRequest:
    return ExecutionRequest(
        call_id="call-1",
        tool=tool_name,
        arguments=arguments or {},
        agent_allowlist=list(allow) if allow is not None else [tool_name],
        deadline=deadline or NOW + timedelta(seconds=30),
        approved=approved,
    )


def make_executor(reg: ToolRegistry, **kw: Any) -> Executor:
    kw.setdefault("clock", lambda: NOW)
    kw.setdefault("sleep", Sleeps())
    kw.setdefault("rng", lambda: 1.0)
    return Executor(reg, **kw)


class Sum(BaseModel):
    total: int
    at: datetime


def test_request_and_outcome_shapes() -> None:
    outcome = ExecutionOutcome(call_id="c", ok=True)
    assert outcome.error_code is None
    assert outcome.attempts == 0


async def test_success_serialises_pydantic_results() -> None:
    reg = ToolRegistry()

    @reg.tool
    async def add(a: int, b: int = 2) -> Sum:
        """Add."""
        return Sum(total=a + b, at=NOW)

    outcome = await make_executor(reg).execute(request("add", {"a": 1}))
    assert outcome.ok, outcome
    assert outcome.content == {"total": 3, "at": "2030-01-01T12:00:00Z"}
    assert outcome.attempts == 1
    assert outcome.call_id == "call-1"


async def test_sync_tools_run_off_the_event_loop() -> None:
    reg = ToolRegistry()
    loop_thread: list[bool] = []

    @reg.tool
    def where() -> str:
        """Tell whether it runs on the loop thread."""
        try:
            asyncio.get_running_loop()
            loop_thread.append(True)
        except RuntimeError:
            loop_thread.append(False)
        return "ok"

    outcome = await make_executor(reg).execute(request("where"))
    assert outcome.ok
    assert loop_thread == [False]


async def test_unknown_tool_is_an_outcome_not_an_exception() -> None:
    outcome = await make_executor(ToolRegistry()).execute(request("missing"))
    assert not outcome.ok
    assert outcome.error_code == "unknown_tool"
    assert "missing" in (outcome.error_message or "")


async def test_tool_not_on_allowlist_is_refused_without_running() -> None:
    reg = ToolRegistry()
    calls: list[int] = []

    @reg.tool
    def secret() -> str:
        """Secret."""
        calls.append(1)
        return "x"

    outcome = await make_executor(reg).execute(request("secret", allow=["other"]))
    assert outcome.error_code == "not_allowed"
    assert calls == []


async def test_approval_is_required_for_flagged_tools() -> None:
    reg = ToolRegistry()

    @reg.tool(requires_approval=True, side_effecting=True)
    def pay(amount: int) -> int:
        """Pay."""
        return amount

    ex = make_executor(reg)
    refused = await ex.execute(request("pay", {"amount": 5}))
    assert refused.error_code == "approval_required"
    approved = await ex.execute(request("pay", {"amount": 5}, approved=True))
    assert approved.ok
    assert approved.content == 5


async def test_invalid_arguments_name_every_bad_field() -> None:
    reg = ToolRegistry()

    @reg.tool
    def book(city: str, nights: int, extra: bool = False) -> str:
        """Book."""
        return city

    outcome = await make_executor(reg).execute(request("book", {"nights": "many", "colour": "red"}))
    assert outcome.error_code == "invalid_arguments"
    assert outcome.attempts == 0
    message = outcome.error_message or ""
    assert message.startswith("invalid arguments for 'book' (city, nights, colour):")
    assert "- city: Field required" in message
    assert "- nights: Input should be a valid integer" in message
    assert "- colour: Extra inputs are not permitted" in message


async def test_arguments_must_be_an_object() -> None:
    reg = ToolRegistry()

    @reg.tool
    def noop() -> None:
        """Nothing."""

    outcome = await make_executor(reg).execute(
        ExecutionRequest("c", "noop", ["not", "a", "dict"], ["noop"], NOW)  # type: ignore[arg-type]
    )
    assert outcome.error_code == "invalid_arguments"
    assert "JSON object" in (outcome.error_message or "")


async def test_tool_timeout_is_enforced() -> None:
    reg = ToolRegistry()
    never = asyncio.Event()

    @reg.tool(timeout_s=0.05)
    async def hang() -> None:
        """Hang."""
        await never.wait()

    outcome = await make_executor(reg).execute(request("hang"))
    assert outcome.error_code == "timeout"
    assert "0.05" in (outcome.error_message or "")


async def test_request_deadline_shorter_than_tool_timeout_wins() -> None:
    reg = ToolRegistry()
    never = asyncio.Event()

    @reg.tool(timeout_s=60)
    async def hang() -> None:
        """Hang."""
        await never.wait()

    deadline = NOW + timedelta(seconds=0.05)
    outcome = await make_executor(reg).execute(request("hang", deadline=deadline))
    assert outcome.error_code == "timeout"
    assert outcome.duration_ms < 5_000


async def test_past_deadline_and_naive_deadline() -> None:
    reg = ToolRegistry()
    calls: list[int] = []

    @reg.tool
    def quick() -> int:
        """Quick."""
        calls.append(1)
        return 1

    ex = make_executor(reg)
    past = await ex.execute(request("quick", deadline=NOW - timedelta(seconds=1)))
    assert past.error_code == "timeout"
    assert past.attempts == 0
    naive = await ex.execute(request("quick", deadline=datetime(2030, 1, 1)))
    assert naive.error_code == "invalid_arguments"
    assert calls == []


async def test_transient_errors_are_retried_with_backoff_then_succeed() -> None:
    reg = ToolRegistry()
    failures = [TransientToolError("busy"), TransientToolError("still busy")]

    @reg.tool(retry=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=1.0))
    async def flaky() -> str:
        """Flaky."""
        if failures:
            raise failures.pop(0)
        return "done"

    sleeps = Sleeps()
    outcome = await make_executor(reg, sleep=sleeps).execute(request("flaky"))
    assert outcome.ok, outcome
    assert outcome.content == "done"
    assert outcome.attempts == 3
    assert sleeps.waits == [0.01, 0.02]  # rng fixed at 1.0: the full exponential ceiling


async def test_transient_errors_stop_after_max_attempts() -> None:
    reg = ToolRegistry()

    @reg.tool(retry=RetryPolicy(max_attempts=3, base_delay=0.0))
    async def down() -> str:
        """Down."""
        raise TransientToolError("service unavailable")

    outcome = await make_executor(reg).execute(request("down"))
    assert outcome.error_code == "transient"
    assert outcome.error_message == "service unavailable"
    assert outcome.attempts == 3


async def test_retry_is_bounded_by_the_deadline() -> None:
    reg = ToolRegistry()

    @reg.tool(timeout_s=0.2, retry=RetryPolicy(max_attempts=10, base_delay=60, max_delay=60))
    async def down() -> str:
        """Down."""
        raise TransientToolError("later")

    sleeps = Sleeps()
    outcome = await make_executor(reg, sleep=sleeps).execute(request("down"))
    assert outcome.error_code == "transient"
    assert outcome.attempts == 1  # a 60 s backoff cannot fit in a 0.2 s budget
    assert sleeps.waits == []


@pytest.mark.parametrize(
    ("exc", "code"),
    [(ToolFailedError("bad input"), "tool_failed"), (ValueError("bug"), "internal_error")],
)
async def test_non_transient_errors_are_not_retried(exc: Exception, code: str) -> None:
    reg = ToolRegistry()
    calls: list[int] = []

    @reg.tool(retry=RetryPolicy(max_attempts=5, base_delay=0.0))
    def broken() -> None:
        """Broken."""
        calls.append(1)
        raise exc

    outcome = await make_executor(reg).execute(request("broken"))
    assert outcome.error_code == code
    assert outcome.attempts == 1
    assert calls == [1]
    if code == "internal_error":
        assert outcome.error_message == "ValueError: bug"


async def test_breaker_opens_after_failures_and_recovers() -> None:
    reg = ToolRegistry()
    calls: list[int] = []
    healthy = False

    @reg.tool
    def shaky() -> str:
        """Shaky."""
        calls.append(1)
        if not healthy:
            raise RuntimeError("down")
        return "up"

    mono = FakeMonotonic()
    ex = make_executor(reg, monotonic=mono, breaker_failure_threshold=2, breaker_reset_timeout=10.0)
    assert (await ex.execute(request("shaky"))).error_code == "internal_error"
    assert (await ex.execute(request("shaky"))).error_code == "internal_error"
    refused = await ex.execute(request("shaky"))
    assert refused.error_code == "circuit_open"
    assert "tool:shaky" in (refused.error_message or "")
    assert len(calls) == 2  # the open breaker did not call the tool
    assert ex.breaker("shaky").state is BreakerState.OPEN

    mono.now += 10.0
    healthy = True
    recovered = await ex.execute(request("shaky"))
    assert recovered.ok
    assert ex.breaker("shaky").state is BreakerState.CLOSED


async def test_timeouts_count_against_the_breaker() -> None:
    reg = ToolRegistry()
    never = asyncio.Event()

    @reg.tool(timeout_s=0.02)
    async def hang() -> None:
        """Hang."""
        await never.wait()

    ex = make_executor(reg, breaker_failure_threshold=1)
    assert (await ex.execute(request("hang"))).error_code == "timeout"
    assert (await ex.execute(request("hang"))).error_code == "circuit_open"


async def test_refusals_do_not_open_the_breaker() -> None:
    reg = ToolRegistry()

    @reg.tool
    def strict() -> None:
        """Strict."""
        raise ToolFailedError("no")

    ex = make_executor(reg, breaker_failure_threshold=1)
    for _ in range(3):
        assert (await ex.execute(request("strict"))).error_code == "tool_failed"
    assert ex.breaker("strict").state is BreakerState.CLOSED


class InFlight:
    """Counts concurrent executions; releases them all at once on demand."""

    def __init__(self, expect: int) -> None:
        self.current = 0
        self.max = 0
        self.started = 0
        self.expect = expect
        self.reached = asyncio.Event()
        self.release = asyncio.Event()

    async def run(self) -> str:
        self.current += 1
        self.started += 1
        self.max = max(self.max, self.current)
        if self.current >= self.expect:
            self.reached.set()
        await self.release.wait()
        self.current -= 1
        return "ok"


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_per_tool_concurrency_limit_is_honoured() -> None:
    reg = ToolRegistry()
    counter = InFlight(expect=2)

    @reg.tool(max_concurrency=2)
    async def busy() -> str:
        """Busy."""
        return await counter.run()

    ex = make_executor(reg)
    tasks = [asyncio.create_task(ex.execute(request("busy"))) for _ in range(6)]
    await counter.reached.wait()
    await _settle()
    assert counter.started == 2  # the other four are queued, not running
    counter.release.set()
    outcomes = await asyncio.gather(*tasks)
    assert all(o.ok for o in outcomes)
    assert counter.max == 2
    assert counter.started == 6


async def test_global_concurrency_limit_spans_tools() -> None:
    reg = ToolRegistry()
    counter = InFlight(expect=3)

    @reg.tool
    async def one() -> str:
        """One."""
        return await counter.run()

    @reg.tool
    async def two() -> str:
        """Two."""
        return await counter.run()

    ex = make_executor(reg, global_concurrency=3)
    tasks = [
        asyncio.create_task(ex.execute(request(name, allow=["one", "two"])))
        for name in ["one", "two"] * 4
    ]
    await counter.reached.wait()
    await _settle()
    assert counter.started == 3
    counter.release.set()
    assert all(o.ok for o in await asyncio.gather(*tasks))
    assert counter.max == 3


async def test_non_json_result_is_an_error() -> None:
    reg = ToolRegistry()

    @reg.tool
    def weird() -> object:
        """Weird."""
        return object()

    outcome = await make_executor(reg).execute(request("weird"))
    assert outcome.error_code == "invalid_result"


async def test_duration_is_measured_with_the_injected_clock() -> None:
    reg = ToolRegistry()
    mono = FakeMonotonic()

    @reg.tool
    async def slow() -> str:
        """Slow."""
        mono.now += 1.25
        return "ok"

    outcome = await make_executor(reg, monotonic=mono).execute(request("slow"))
    assert outcome.duration_ms == 1250.0


def test_global_concurrency_must_be_positive() -> None:
    with pytest.raises(ValueError, match="global_concurrency"):
        Executor(ToolRegistry(), global_concurrency=0)
