"""What the memory service does with each message it consumes.

* ``runs.requested`` → assemble the context and publish ``RunReady``
  (id ``("ready", run_id)``; nothing to persist, a replay re-publishes the same id);
* ``knowledge.queries`` → search and publish a ``ToolResult`` (id ``("tool-result", call_id)``);
* ``runs.completed`` → record the turn (once, in session order), refresh the
  running summary when due, learn memories (idempotent by memory id, audited);
* ``knowledge.documents.v1`` → ingest, replace or delete a document.

Every step is safe to repeat: a redelivered message finds its effects
already stored and re-publishes the same message ids, which consumers drop.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.agents import AgentDefinition, Limits, MemorySettings
from schemas.audit import AuditOutcome
from schemas.common import ChatRole
from schemas.envelope import Envelope, deterministic_id
from schemas.knowledge import KNOWLEDGE_TOOL, KnowledgeDocument, KnowledgeHit, KnowledgeQuery
from schemas.runs import RunCommand, RunCommandKind, RunCompleted, RunReady, RunRequested, RunStatus
from schemas.tools import MAX_INLINE_CONTENT_BYTES, ToolError, ToolErrorCode, ToolResult
from schemas.topics import RUNS_COMPLETED, RUNS_READY, TOOLS_RESULTS
from services.memory.assembly import ContextAssembler
from services.memory.knowledge import KnowledgeBase
from services.memory.learning import Extractor, Memory, merge
from services.memory.metrics import (
    CONTEXT_ASSEMBLY,
    KNOWLEDGE_HITS,
    MEMORIES_LEARNED,
    RUNS_QUEUED,
)
from services.memory.run_queue import RunQueue, Sequencer
from services.memory.settings import MemoryServiceSettings
from services.memory.store import MemoryStore, SessionState
from services.memory.summarizer import Summarizer
from services.memory.window import plan_summary, select_window
from shared.agent_registry import AgentRegistry
from shared.audit import AuditEmitter
from shared.control_state import ControlView
from shared.kafka.consumer import Delivery
from shared.kafka.publisher import Publisher
from shared.observability.metrics import ServiceMetrics

__all__ = ["MemoryHandlers", "turn_messages"]

log = logging.getLogger("mindstream.memory")

_DEFAULT_MEMORY = MemorySettings()


def _utcnow() -> datetime:
    return datetime.now(UTC)


def turn_messages(done: RunCompleted) -> list[dict[str, Any]]:
    """The chat messages of a completed run worth keeping as session history.

    ``RunCompleted.messages`` starts with the user's input; system prompts are
    the agent's, not the conversation's, and are left out. A run that reports
    no messages but an output is recorded as that one assistant message.
    """
    messages = [
        m.model_dump(mode="json", exclude_defaults=False)
        for m in done.messages
        if m.role is not ChatRole.SYSTEM
    ]
    if not messages and done.output:
        messages = [{"role": "assistant", "content": done.output}]
    return messages


def _user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    return "\n".join(
        str(m.get("content") or "") for m in messages if m.get("role") == "user"
    ).strip()


def _assistant_text(messages: Sequence[Mapping[str, Any]], output: str | None) -> str:
    for m in reversed(messages):
        if m.get("role") == "assistant" and m.get("content"):
            return str(m["content"])
    return output or ""


def _fit_hits(hits: list[KnowledgeHit]) -> list[KnowledgeHit]:
    """Drop the lowest-ranked hits until the result fits inline (labels can be large)."""
    while hits:
        size = len(json.dumps({"hits": [h.model_dump(mode="json") for h in hits]}).encode())
        if size <= MAX_INLINE_CONTENT_BYTES:
            break
        hits = hits[:-1]
    return hits


@dataclass
class MemoryHandlers:
    store: MemoryStore
    knowledge: KnowledgeBase
    registry: AgentRegistry
    publisher: Publisher
    audit: AuditEmitter
    metrics: ServiceMetrics
    settings: MemoryServiceSettings
    extractor: Extractor
    summarizer: Summarizer
    queue: RunQueue  # a session's runs, one at a time (see services.memory.run_queue)
    clock: Callable[[], datetime] = _utcnow
    control: ControlView | None = None  # operating mode: degraded sheds knowledge and learning
    assembler: ContextAssembler = field(init=False)
    sequencer: Sequencer = field(init=False)

    def __post_init__(self) -> None:
        self.assembler = ContextAssembler(self.store, self.knowledge, self.settings)
        self._assembly_seconds = self.metrics.histogram(CONTEXT_ASSEMBLY)
        self._learned = self.metrics.counter(MEMORIES_LEARNED)
        self._hits = self.metrics.counter(KNOWLEDGE_HITS)
        queued = self.metrics.counter(RUNS_QUEUED)
        self.sequencer = Sequencer(
            self.queue, self.start_run, allowed=self._allowed_time, clock=self.clock,
            on_event=lambda kind: queued.inc(outcome=kind),
        )

    def _allowed_time(self, request: RunRequested) -> timedelta:
        """How long a started run may hold its session: its agent's deadline and the
        grace reasoning gives a run past it, then some (a sweep may be late)."""
        agent = self._agent(request.agent_id)
        limits = agent.limits if agent else Limits()
        return timedelta(seconds=limits.deadline_seconds) + self.settings.run_queue_grace

    def _agent(self, ref: str) -> AgentDefinition | None:
        return self.registry.get(ref)

    # -- runs.requested ---------------------------------------------------------

    async def on_run_requested(self, delivery: Delivery[RunRequested]) -> None:
        """Queue the run behind its session's current one (see :mod:`.run_queue`);
        start it now when the session is free."""
        await self.sequencer.requested(delivery.message, delivery.envelope)

    async def start_run(self, request: RunRequested, envelope: Envelope | None) -> None:
        """Assemble the run's context and publish its ``RunReady`` (deterministic id)."""
        agent = self._agent(request.agent_id)
        if agent is None:
            log.warning("agent %s unknown; assembling with default memory settings",
                        request.agent_id)
        memory = agent.memory if agent else _DEFAULT_MEMORY
        started = time.perf_counter()
        now = self.clock()
        assembled = await self.assembler.assemble(
            request, memory, now=now,
            knowledge_on=bool(agent and agent.knowledge)
            and not (self.control is not None and self.control.knowledge_off),
        )
        self._assembly_seconds.observe(time.perf_counter() - started)
        if assembled.context.knowledge:
            self._hits.inc(len(assembled.context.knowledge), use="context")
        included = assembled.bundle.included
        log.info(
            "context for run %s: %d/%d tokens (%d messages, summary %s, %d memories, %d hits)",
            request.run_id, included.total_tokens, included.budget_tokens,
            included.history_messages, bool(assembled.context.summary),
            len(included.memory_ids), len(included.knowledge_ids),
        )
        ready = RunReady(
            run_id=request.run_id,
            session_id=request.session_id,
            request=request,
            context=assembled.context,
            prepared_at=now,
        )
        await self.publisher.publish(
            RUNS_READY, ready, caused_by=envelope,
            message_id=deterministic_id("ready", request.run_id),
        )

    # -- runs.commands ----------------------------------------------------------

    async def on_run_command(self, delivery: Delivery[RunCommand]) -> None:
        """Cancel a run still waiting in its session's queue.

        Reasoning cancels runs that have started; one that has not has only a slot
        here, so memory reports it cancelled (the same ``RunCompleted`` a client
        gets for any cancel) and its turn is passed over when it comes.
        """
        cmd = delivery.message
        if cmd.command is not RunCommandKind.CANCEL:
            return
        slot = await self.sequencer.cancel(cmd.run_id)
        if slot is None or slot.request is None:
            return  # started (reasoning cancels it), ended, or unknown
        request, now = slot.request, self.clock()
        reason = f"cancelled by {cmd.actor.kind.value}:{cmd.actor.id} before it started" + (
            f": {cmd.reason}" if cmd.reason else "")
        done = RunCompleted(
            run_id=request.run_id, session_id=request.session_id, agent_id=request.agent_id,
            user_id=request.user_id, parent_run_id=request.parent_run_id,
            status=RunStatus.CANCELLED, error=reason[:2000], completed_at=now,
        )
        message_id = deterministic_id("cancelled-queued", request.run_id)
        await self.publisher.publish(RUNS_COMPLETED, done, caused_by=delivery.envelope,
                                     message_id=message_id)
        if request.reply_topic:
            with contextlib.suppress(Exception):  # best effort, as reasoning does
                await self.publisher.publish(RUNS_COMPLETED, done, caused_by=delivery.envelope,
                                             message_id=message_id,
                                             physical_topic=request.reply_topic)
        await self.audit.emit(
            "run.cancelled", ("run", request.run_id), outcome=AuditOutcome.SUCCESS,
            actor=cmd.actor, reason=reason, details={"agent": request.agent_id, "queued": True},
            key=request.run_id, caused_by=delivery.envelope,
        )

    # -- knowledge.queries ------------------------------------------------------

    async def on_knowledge_query(self, delivery: Delivery[KnowledgeQuery]) -> None:
        query = delivery.message
        started = time.perf_counter()
        agent = self._agent(query.agent_id)
        # Reasoning checks the agent's knowledge setting first; an agent this
        # replica does not know yet (registry lag) is answered, a known agent
        # without knowledge is refused (defence in depth).
        if agent is not None and not agent.knowledge:
            result = ToolResult(
                call_id=query.call_id, run_id=query.run_id, session_id=query.session_id,
                tool=KNOWLEDGE_TOOL, ok=False,
                error=ToolError(code=ToolErrorCode.NOT_ALLOWED,
                                message=f"agent {agent.id} may not search the knowledge base"),
                duration_ms=0,
            )
        else:
            hits = await self.knowledge.search(
                query.query, top_k=query.top_k, min_score=query.min_score,
                filters=query.filters,
            )
            hits = _fit_hits(hits)
            self._hits.inc(len(hits), use="query")
            result = ToolResult(
                call_id=query.call_id, run_id=query.run_id, session_id=query.session_id,
                tool=KNOWLEDGE_TOOL, ok=True,
                content={"hits": [h.model_dump(mode="json") for h in hits]},
                duration_ms=int((time.perf_counter() - started) * 1000),
            )
        await self.publisher.publish(
            TOOLS_RESULTS, result, caused_by=delivery.envelope,
            message_id=deterministic_id("tool-result", query.call_id),
        )

    # -- runs.completed ---------------------------------------------------------

    async def on_run_completed(self, delivery: Delivery[RunCompleted]) -> None:
        """Record the turn, then start the session's next run (it sees this turn),
        then learn (the slow part, which the next run need not wait for)."""
        done = delivery.message
        learn = await self._record(done)
        await self.sequencer.ended(done.run_id)
        if learn is not None:
            await learn(delivery.envelope)

    async def _record(
        self, done: RunCompleted
    ) -> Callable[[Envelope], Awaitable[None]] | None:
        """Record a completed turn and refresh the summary; what is left to learn."""
        if done.status is not RunStatus.COMPLETED:
            return None
        if done.parent_run_id is not None:
            # A delegated run's "user" is the delegating agent: not history of the
            # user's session, and nothing to learn about the user from.
            return None
        messages = turn_messages(done)
        if not messages:
            log.info("run %s completed with no messages; nothing to record", done.run_id)
            return None
        now = self.clock()
        turn = await self.store.record_turn(
            session_id=done.session_id, run_id=done.run_id, user_id=done.user_id,
            agent_id=done.agent_id, messages=messages, at=done.completed_at,
        )
        agent = self._agent(done.agent_id)
        memory = agent.memory if agent else _DEFAULT_MEMORY
        await self._maybe_summarize(
            done.session_id, memory, bool(agent and agent.knowledge), now, turn.session
        )
        shed = self.control is not None and self.control.learning_off  # degraded mode
        if not memory.learn or turn.learned or shed:
            return None

        async def learn(envelope: Envelope) -> None:
            if await self._learn(done, messages, envelope):
                await self.store.mark_learned(done.session_id, turn.start)

        return learn

    async def _maybe_summarize(
        self, session_id: str, memory: MemorySettings, knowledge_on: bool, now: datetime,
        state: SessionState | None = None,
    ) -> None:
        """Fold messages that fell out of the window into the running summary, when due.

        The window is planned with the room history will have at assembly
        (the agent's budget less what memories and knowledge may take), so
        what is folded is what the next run would no longer see.
        """
        state = state or await self.store.get_session(session_id)
        if state is None:
            return
        tail = await self.store.unsummarized(state, limit=self.settings.history_load_limit)
        if not tail:
            return
        budget = self.assembler.budget(memory)
        room = budget.total_tokens - budget.memory_max_tokens
        room -= budget.knowledge_max_tokens if knowledge_on else 0
        policy = self.assembler.policy(
            memory, max_tokens=max(1, min(self.settings.window_max_tokens, room))
        )
        history = [m.chat for m in tail]
        window = select_window(
            history, summary=state.summary, policy=policy,
            older_omitted=state.summarized_through > 0 or tail[0].seq > state.summarized_through,
        )
        plan = plan_summary(history, window_start=window.first_index, summarized_through=0,
                            policy=policy)
        if plan is None:
            return
        folded = [{k: v for k, v in m.items() if k != "id"} for m in plan.to_fold]
        text = await self.summarizer.summarize(state.summary, folded)
        through = (
            tail[plan.covers_through].seq if plan.covers_through < len(tail) else tail[-1].seq + 1
        )
        await self.store.save_summary(
            state, summary=text[: self.settings.summary_max_chars], summarized_through=through,
            now=now,
        )

    async def _learn(
        self, done: RunCompleted, messages: list[dict[str, Any]], envelope: Envelope
    ) -> bool:
        """Learn from the turn; False when there was nothing to learn (no marker needed:
        a replay extracts nothing again)."""
        user_text = _user_text(messages)
        if not user_text:
            return False
        facts = await self.extractor.extract(user_text, _assistant_text(messages, done.output))
        if not facts:
            return False
        known = await self.store.memories_of(
            done.user_id, limit=self.settings.memories_per_user_limit
        )
        plan = merge(
            known, facts, user_id=done.user_id, run_id=done.run_id, now=done.completed_at,
            min_confidence=self.settings.learn_min_confidence,
        )
        # A fact from a run older than the memory's last change does not overwrite it
        # (runs of one user in different sessions may be handled out of order).
        updates = [u for u in plan.updates if u.previous.updated_at <= done.completed_at]
        for added in plan.adds:
            await self.store.add_memory(added)
        for update in updates:
            await self.store.update_memory(update)
        for added in plan.adds:
            await self._audit_write(added, envelope, previous=None)
            self._learned.inc(action="added")
        for update in updates:
            await self._audit_write(update.current, envelope, previous=update.previous)
            self._learned.inc(action="updated")
        # A crash between storing and auditing leaves memories this run wrote but
        # never announced: re-emit (same deterministic ids, so no duplicates).
        for same in plan.unchanged:
            if same.source_run_id == done.run_id:
                await self._audit_write(same, envelope, previous=None)
        return True

    async def _audit_write(
        self, memory: Memory, envelope: Envelope, *, previous: Memory | None
    ) -> None:
        action = "memory.learned" if memory.version == 1 else "memory.updated"
        before = previous.text if previous is not None else None
        if before is None and memory.history:
            before = memory.history[-1].text
        await self.audit.emit(
            action, ("memory", memory.id),
            outcome=AuditOutcome.SUCCESS,
            before=before,
            after=memory.text,
            details={"user_id": memory.user_id, "topic": memory.topic,
                     "run_id": memory.source_run_id, "version": memory.version},
            key=f"{memory.id}:{memory.version}",
            caused_by=envelope,
        )

    # -- knowledge documents ----------------------------------------------------

    async def on_document(self, delivery: Delivery[KnowledgeDocument]) -> None:
        document = delivery.message
        outcome = await self.knowledge.ingest(document, now=self.clock())
        log.info("knowledge document %s: %s (%d chunks)", document.document_id,
                 outcome.action, outcome.chunks)
