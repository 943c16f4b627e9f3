"""What the tools service does with one ``ToolCall``: run it at most once, answer always.

The ledger (:mod:`services.tools.store`) decides:

* finished: re-publish the stored result under the same deterministic id
  (``deterministic_id("tool-result", call_id)``); the tool does not run again;
* started but unfinished (a crash, or another replica took the call while
  this one was busy): the tool's recovery policy decides. ``retry``
  (idempotent tools) takes the call over and runs it; ``fail`` answers
  "interrupted: the tool may or may not have run";
* absent: insert it as started (a concurrent duplicate loses the insert and
  re-reads), re-check the agent's allowlist here (defense in depth, whatever
  the message says), execute before the call's deadline, store the result
  (large ones by reference), mark finished, then publish and audit.

Persist, then publish: the result is in MongoDB before it is on Kafka, so a
crash between the two re-publishes the same message on redelivery. Audit
events carry the argument digest and size, never the arguments.

Within one process, deliveries of the same call wait for each other, so a
duplicate never mistakes a call in progress for a crashed one.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from schemas.audit import AuditOutcome
from schemas.envelope import Envelope, deterministic_id
from schemas.tools import ContentRef, ToolCall, ToolResult
from schemas.topics import TOOLS_RESULTS
from services.tools.errors import ErrorCode
from services.tools.executor import ExecutionOutcome, ExecutionRequest, Executor
from services.tools.metrics import ToolMetrics
from services.tools.registry import RecoveryPolicy, ToolRegistry
from services.tools.results import (
    INTERRUPTED,
    REFUSED_CODES,
    encode_content,
    error_result,
    result_from_outcome,
)
from services.tools.store import CallRecord, CallStatus, ToolCallStore
from shared.agent_registry import AgentRegistry
from shared.audit import AuditEmitter, digest
from shared.errors import ConflictError
from shared.kafka.consumer import Delivery
from shared.kafka.publisher import Publisher
from shared.observability.tracing import start_span

__all__ = ["CallHandler", "result_message_id"]

log = logging.getLogger("mindstream.tools")

INTERRUPTED_MESSAGE = (
    "interrupted: the tool may or may not have run (the service stopped while the call was "
    "in progress, and this tool is not safe to run twice)"
)
_MAX_UNPUBLISHED = 10_000


def result_message_id(call_id: str) -> str:
    return deterministic_id("tool-result", call_id)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class _Answer:
    owner: str
    result: ToolResult
    outcome: str
    attempts: int


class CallHandler:
    """Consumer-pipeline handler for ``mindstream.tools.calls.v1``."""

    def __init__(
        self,
        *,
        registry: ToolRegistry,
        executor: Executor,
        agents: AgentRegistry,
        store: ToolCallStore,
        publisher: Publisher,
        audit: AuditEmitter,
        metrics: ToolMetrics,
        inline_limit: int,
        max_result_bytes: int,
        clock: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._registry = registry
        self._executor = executor
        self._agents = agents
        self._store = store
        self._publisher = publisher
        self._audit = audit
        self._metrics = metrics
        self._inline_limit = inline_limit
        self._max_result_bytes = max_result_bytes
        self._clock = clock
        self._monotonic = monotonic
        self._inflight: dict[str, asyncio.Event] = {}
        self._unpublished: dict[str, _Answer] = {}

    async def handle(self, delivery: Delivery[ToolCall]) -> None:
        call_id = delivery.message.call_id
        while (busy := self._inflight.get(call_id)) is not None:
            await busy.wait()
        done = self._inflight[call_id] = asyncio.Event()
        try:
            await self._handle(delivery.message, delivery.envelope)
        finally:
            del self._inflight[call_id]
            done.set()

    async def _handle(self, call: ToolCall, envelope: Envelope) -> None:
        # Insert first: a new call (the common case) costs one write, no read.
        for _ in range(5):
            owner = uuid.uuid4().hex
            if await self._store.start(
                call.call_id, owner=owner, tool=call.tool, agent_id=call.agent_id,
                run_id=call.run_id, session_id=call.session_id,
                args_digest=digest(call.arguments), args_size=_size(call), now=self._clock(),
            ):  # fmt: skip
                await self._run(call, envelope, owner, attempts=1)
                return
            record = await self._store.get(call.call_id)
            if record is None:
                continue  # expired between the two reads: start afresh
            if record.status is CallStatus.FINISHED:
                await self._replay(call, envelope, record)
                return
            if await self._recover(call, envelope, record):
                return
        raise ConflictError(f"tool call {call.call_id}: the ledger kept changing under us")

    async def _recover(self, call: ToolCall, envelope: Envelope, record: CallRecord) -> bool:
        """Handle a call found started but unfinished; False means re-read the ledger."""
        pending = self._unpublished.get(call.call_id)
        if pending is not None and pending.owner == record.owner:
            # Our own execution, whose result did not reach the ledger (a retry of this
            # handler after a database error): finish it, never run the tool again.
            await self._complete(call, envelope, pending)
            return True
        spec = self._registry.get(call.tool) if call.tool in self._registry else None
        if spec is None or spec.recovery is RecoveryPolicy.RETRY:
            owner = uuid.uuid4().hex
            if not await self._store.take_over(
                call.call_id, owner=owner, previous=record.owner, now=self._clock()
            ):
                return False
            log.warning("tool call %s was interrupted; running it again (%s is idempotent)",
                        call.call_id, call.tool)  # fmt: skip
            await self._run(call, envelope, owner, attempts=record.attempts + 1)
            return True
        log.warning("tool call %s was interrupted; %s is not idempotent, answering with an error",
                    call.call_id, call.tool)  # fmt: skip
        result = error_result(call, INTERRUPTED, INTERRUPTED_MESSAGE)
        await self._complete(call, envelope, _Answer(record.owner, result, INTERRUPTED,
                                                     record.attempts))  # fmt: skip
        return True

    async def _run(self, call: ToolCall, envelope: Envelope, owner: str, *, attempts: int) -> None:
        outcome = await self._execute(call)
        result = await self._to_result(call, outcome)
        label = "ok" if result.ok else (outcome.error_code or ErrorCode.INTERNAL_ERROR.value)
        if outcome.ok and not result.ok:
            label = ErrorCode.RESOURCE_LIMIT.value
        answer = _Answer(owner, result, label, attempts)
        self._remember(call.call_id, answer)
        self._metrics.answered(call.tool, label, outcome.duration_ms / 1000.0)
        await self._complete(call, envelope, answer)

    async def _execute(self, call: ToolCall) -> ExecutionOutcome:
        started = self._monotonic()
        agent = self._agents.get(call.agent_id)
        if agent is None:
            return self._refusal(call, started, ErrorCode.NOT_ALLOWED,
                                 f"agent {call.agent_id!r} is not known to the tools service")
        approved = call.approved_by is not None
        if call.tool in agent.require_approval and call.tool in agent.tools and not approved:
            return self._refusal(call, started, ErrorCode.APPROVAL_REQUIRED,
                                 f"agent {agent.id!r} may call {call.tool!r} only with an "
                                 "operator's approval")  # fmt: skip
        with start_span("tool.call", attributes={"tool": call.tool, "call_id": call.call_id}):
            outcome = await self._executor.execute(ExecutionRequest(
                call_id=call.call_id, tool=call.tool, arguments=dict(call.arguments),
                agent_allowlist=list(agent.tools), deadline=call.deadline, approved=approved,
            ))  # fmt: skip
        if call.tool in self._registry:
            self._metrics.breaker(call.tool, self._executor.breaker(call.tool).state)
        return outcome

    def _refusal(self, call: ToolCall, started: float, code: ErrorCode, msg: str) -> ExecutionOutcome:
        return ExecutionOutcome(
            call_id=call.call_id, ok=False, error_code=code.value, error_message=msg,
            duration_ms=round((self._monotonic() - started) * 1000.0, 3),
        )  # fmt: skip

    async def _to_result(self, call: ToolCall, outcome: ExecutionOutcome) -> ToolResult:
        if not outcome.ok:
            return result_from_outcome(call, outcome)
        data = encode_content(outcome.content)
        if len(data) > self._max_result_bytes:
            return error_result(
                call, ErrorCode.RESOURCE_LIMIT,
                f"the result of {call.tool!r} is {len(data)} bytes, above the limit of "
                f"{self._max_result_bytes}; ask for less",
                outcome.duration_ms,
            )  # fmt: skip
        if len(data) <= self._inline_limit:
            return result_from_outcome(call, outcome)
        ref_id = deterministic_id("tool-payload", call.call_id)
        payload = await self._store.put_payload(ref_id, call.call_id, data, self._clock())
        ref = ContentRef(ref_id=ref_id, size_bytes=len(data), sha256=payload.sha256)
        return result_from_outcome(call, outcome, content_ref=ref)

    async def _complete(self, call: ToolCall, envelope: Envelope, answer: _Answer) -> None:
        finished = await self._store.finish(
            call.call_id, owner=answer.owner, tool=call.tool, attempts=answer.attempts,
            result=answer.result.model_dump(mode="json"), outcome=answer.outcome,
            duration_ms=answer.result.duration_ms, now=self._clock(),
        )  # fmt: skip
        if not finished:
            self._unpublished.pop(call.call_id, None)
            record = await self._store.get(call.call_id)
            if record is None or record.status is not CallStatus.FINISHED:
                raise ConflictError(f"tool call {call.call_id}: result neither stored nor found")
            await self._replay(call, envelope, record)
            return
        await self._publish(call, envelope, answer.result, answer.outcome, answer.attempts)
        self._unpublished.pop(call.call_id, None)

    async def _replay(self, call: ToolCall, envelope: Envelope, record: CallRecord) -> None:
        if record.result is None:
            raise ConflictError(f"tool call {call.call_id} is finished but has no result")
        result = ToolResult.model_validate(record.result)
        outcome = record.outcome or ("ok" if result.ok else "failed")
        self._metrics.replayed(call.tool)
        await self._publish(call, envelope, result, outcome, record.attempts)

    async def _publish(
        self, call: ToolCall, envelope: Envelope, result: ToolResult, outcome: str, attempts: int
    ) -> None:
        """Result and audit event together: both are already durable in the ledger, and
        a failure of either fails the handler, whose retry re-publishes both."""
        refused = outcome in REFUSED_CODES
        publish_result = self._publisher.publish(
            TOOLS_RESULTS, result, caused_by=envelope, message_id=result_message_id(call.call_id)
        )
        emit_audit = self._audit.emit(
            "tool.refused" if refused else "tool.executed",
            ("tool_call", call.call_id),
            outcome=(AuditOutcome.REFUSED if refused
                     else AuditOutcome.SUCCESS if result.ok else AuditOutcome.FAILED),
            reason=result.error.message if result.error is not None else None,
            details={
                "tool": call.tool, "agent": call.agent_id, "run": call.run_id,
                "outcome": outcome, "duration_ms": result.duration_ms, "attempts": attempts,
                "args_sha256": digest(call.arguments), "args_bytes": _size(call),
                "by_reference": result.content_ref is not None,
                "approved_by": call.approved_by.id if call.approved_by is not None else None,
            },
            key=call.call_id,
            caused_by=envelope,
        )  # fmt: skip
        await asyncio.gather(publish_result, emit_audit)

    def _remember(self, call_id: str, answer: _Answer) -> None:
        if len(self._unpublished) >= _MAX_UNPUBLISHED:
            self._unpublished.pop(next(iter(self._unpublished)))
        self._unpublished[call_id] = answer


def _size(call: ToolCall) -> int:
    return len(encode_content(call.arguments))
