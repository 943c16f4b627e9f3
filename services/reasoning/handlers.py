"""What the reasoning service does with each message: the run loop, one step at a time.

Every handler follows the same shape (architecture rule 2):

1. load the run; if its last step left an unpublished outbox (a crash between the
   write and the publish), publish it now, with the stored ids;
2. apply the input through the pure state machine (:mod:`services.reasoning.state`);
   an input already applied is absorbed (no second write, no second model call);
3. write the new state together with the messages it implies (outbox) in one
   versioned update, publish them, clear the outbox;
4. drive the run on: while it is ``running``, claim the model call (a versioned write
   of :class:`~services.reasoning.state.ModelClaim`), call the model (the only slow
   step), then persist and publish that step the same way. A run waiting for tools,
   approval or a child run simply returns: nothing waits in memory.

The claim is what makes "one model call per step" hold: a redelivered input, a
rebalance overlap or the sweeper may find the same run ``running`` while another
handler is still calling the model, and only the handler whose claim was stored calls
it. A claimant that dies leaves its claim to expire; the sweeper then drives the run.

Kafka delivers one session's messages in order to one consumer; child runs live in
their own sessions, so a parent may be written from two partitions at once, which
the ``version`` check turns into a retried conflict rather than a lost update.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.agents import AgentDefinition, split_agent_ref
from schemas.audit import AuditOutcome
from schemas.base import Message
from schemas.common import Actor, ChatMessage, ChatRole, ToolCallRequest, Usage
from schemas.envelope import Envelope, deterministic_id
from schemas.knowledge import KnowledgeQuery
from schemas.runs import (
    RunCommand,
    RunCommandKind,
    RunCompleted,
    RunContext,
    RunEvent,
    RunEventKind,
    RunMetrics,
    RunReady,
    RunRequested,
)
from schemas.runs import RunStatus as FinalStatus
from schemas.tools import ToolCall
from schemas.tools import ToolResult as ToolResultMessage
from schemas.topics import (
    KNOWLEDGE_QUERIES,
    RUNS_COMMANDS,
    RUNS_COMPLETED,
    RUNS_EVENTS,
    RUNS_REQUESTED,
    TOOLS_CALLS,
    topic,
)
from services.reasoning.canary import route
from services.reasoning.degradation import shape
from services.reasoning.deltas import DeltaBatcher
from services.reasoning.errors import IllegalTransition, ModelError
from services.reasoning.guardrails import (
    GuardrailAction,
    GuardrailPolicy,
    check_input,
    check_output,
)
from services.reasoning.model import ModelClient, ModelRequest, ModelResponse
from services.reasoning.outbox import SERVICE_ACTOR, Step, clip
from services.reasoning.overload import Admission, Overloaded
from services.reasoning.state import (
    TERMINAL,
    Approve,
    CallStatus,
    Cancel,
    Complete,
    Fail,
    ModelClaim,
    ModelReplied,
    Reject,
    RunLimits,
    RunState,
    RunStatus,
    Start,
    ToolResult,
    check_tool_budget,
    next_step,
    transition,
)
from services.reasoning.store import OutboxItem, RunStore
from services.reasoning.toolbox import ToolCatalog, plan_calls
from shared.agent_registry import AgentRegistry
from shared.control_state import ControlView
from shared.errors import ConflictError, PermanentError
from shared.kafka.consumer import Delivery
from shared.kafka.publisher import Outgoing, Publisher

__all__ = ["Reasoner", "ReasonerConfig", "guardrail_policy", "is_child_completion", "tool_label"]

log = logging.getLogger("mindstream.reasoning")

_WAITING_OR_ACTIVE = [
    RunStatus.REQUESTED,
    RunStatus.RUNNING,
    RunStatus.AWAITING_TOOLS,
    RunStatus.AWAITING_APPROVAL,
    RunStatus.AWAITING_CHILD,
]
_MAX_CONTENT = 200_000


@dataclass(frozen=True)
class ReasonerConfig:
    delta_flush_ms: float = 50.0
    delta_flush_chars: int = 32
    outbox_redrive_after_s: float = 10.0
    running_grace_s: float = 30.0  # a running run past its deadline: its model call gave up
    # A model-call claim's lease. Its holder renews it every third of it while the call
    # runs, so only a dead (or stalled) holder lets it lapse; the sweeper then re-drives.
    model_claim_s: float = 30.0


def guardrail_policy(agent: AgentDefinition) -> GuardrailPolicy:
    g = agent.guardrails
    return GuardrailPolicy(
        injection=g.prompt_injection.value, pii=g.pii.value, output_pii=g.output_pii.value
    )


def is_child_completion(msg: RunCompleted) -> bool:
    """The only completions reasoning acts on: a child run's, which answers its parent."""
    return msg.parent_run_id is not None


def _ref(run: RunState) -> str:
    return f"{run.agent_id}@{run.agent_version}" if run.agent_version else run.agent_id


def _system_prompt(agent: AgentDefinition, context: RunContext, members: str) -> str:
    parts = [agent.instructions]
    if context.summary:
        parts.append(f"Summary of the conversation so far:\n{context.summary}")
    if context.memories:
        parts.append("What you know about the user:\n" + "\n".join(
            f"- {m.text}" for m in context.memories))
    if context.knowledge:
        parts.append("Relevant knowledge:\n" + "\n".join(
            f"[{i + 1}] {h.title + ': ' if h.title else ''}{h.text}"
            for i, h in enumerate(context.knowledge)))
    if members:
        parts.append(f"Your team:\n{members}")
    return "\n\n".join(parts)


def _history(context: RunContext) -> list[dict[str, Any]]:
    """Earlier text turns only: tool turns without their calls would be refused by the API."""
    return [
        {"role": m.role.value, "content": m.content}
        for m in context.history
        if m.role in (ChatRole.USER, ChatRole.ASSISTANT) and m.content
    ]


_TOOL_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")


def tool_label(name: str) -> str:
    """A model may invent any name; contracts carry only valid tool names."""
    if _TOOL_NAME.match(name):
        return name
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "_", name)[:63] or "unnamed"
    return cleaned if cleaned[0].isalpha() else f"t{cleaned}"[:64]


def _chat_message(m: dict[str, Any]) -> ChatMessage:
    content = m.get("content")
    if isinstance(content, str) and len(content) > _MAX_CONTENT:
        content = content[:_MAX_CONTENT]
    calls = []
    for c in m.get("tool_calls") or []:
        try:
            args = json.loads(c["function"]["arguments"] or "{}")
            calls.append(ToolCallRequest(id=c["id"], name=tool_label(c["function"]["name"]),
                                         arguments=args))
        except (ValueError, TypeError):
            calls.append(ToolCallRequest(id=c["id"], name=tool_label(c["function"]["name"])))
    return ChatMessage(role=ChatRole(m["role"]), content=content, tool_calls=calls,
                       tool_call_id=m.get("tool_call_id"))


def _chat_messages(wire: list[dict[str, Any]]) -> list[ChatMessage]:
    """The run's turns as contract messages; a turn that will not fit is kept as text."""
    out: list[ChatMessage] = []
    for m in wire[-500:]:
        try:
            out.append(_chat_message(m))
        except ValueError:
            text = json.dumps(m, default=str)[:_MAX_CONTENT]
            out.append(ChatMessage(role=ChatRole.ASSISTANT, content=text))
    return out


def _result_content(msg: ToolResultMessage) -> Any:
    if msg.content_ref is not None:
        ref = msg.content_ref
        return f"[result stored by reference {ref.ref_id}: {ref.size_bytes} bytes, not inlined]"
    return msg.content


class Reasoner:
    # Optional protections, set by the wiring (app.py); None leaves model calls as they are.
    admission: Admission | None = None  # adaptive limit, priorities, early refusal
    control: ControlView | None = None  # the operating mode (degraded: shed extras)

    def __init__(
        self,
        *,
        store: RunStore,
        publisher: Publisher,
        agents: AgentRegistry,
        model: ModelClient,
        catalog: ToolCatalog,
        config: ReasonerConfig | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store, self.publisher, self.agents = store, publisher, agents
        self.model, self.catalog = model, catalog
        self.config = config or ReasonerConfig()
        self.clock = clock
        self.instance = uuid.uuid4().hex  # owner id of this process's model-call claims
        self._calling: set[str] = set()  # runs whose model call this process has in flight
        # run id -> the version whose stored outbox is published but not yet cleared
        # (see _flush): the next versioned write of the run clears it for free.
        self._sent: dict[str, int] = {}

    # -- persistence and publication ------------------------------------------------------

    def _step(self, run: RunState, seq: int | None = None) -> Step:
        return Step(
            run_id=run.run_id,
            session_id=run.session_id,
            agent_ref=_ref(run),
            number=run.step + 1,
            seq=run.seq if seq is None else seq,
            now=self.clock(),
        )

    async def _publish(self, items: list[OutboxItem], caused_by: Envelope | None,
                       run_id: str) -> None:
        # One round trip for the whole step: sent in order, then every ack awaited.
        batch = []
        for item in items:
            spec = topic(item.topic)
            message: Message = spec.message.model_validate_json(item.body)
            batch.append(Outgoing(spec, message, caused_by=caused_by, message_id=item.id,
                                  correlation_id=run_id, physical_topic=item.physical_topic))
        errors = await self.publisher.publish_many(batch)
        for item, error in zip(items, errors, strict=True):
            if error is None:
                continue
            if not item.best_effort:
                raise error
            log.warning("could not publish to %s for run %s", item.physical_topic, run_id,
                        exc_info=error)

    async def _flush(self, run: RunState, outbox: list[OutboxItem],
                     caused_by: Envelope | None, *, defer_clear: bool = False) -> RunState:
        """Publish the stored outbox of ``run``, then clear it.

        ``defer_clear``: the caller drives the run on at once (:meth:`_drive`), whose
        model-call claim is a versioned write of this very version anyway; that write
        clears the outbox too, which saves the clearing round trips (two on FerretDB).
        If no such write comes, :meth:`_drive` clears it before returning. Either way
        the clear follows the publish, as before; a crash in between leaves the outbox
        to be re-published with the same ids, as before.
        """
        if outbox:
            await self._publish(outbox, caused_by, run.run_id)
            if defer_clear:
                self._sent[run.run_id] = run.version
            else:
                await self.store.clear_outbox(run.run_id, run.version)
        return run

    async def _settle_outbox(self, run_id: str) -> None:
        """Clear an outbox whose clearing was deferred and that no write has cleared since
        (version-checked: a newer version's outbox is never touched)."""
        version = self._sent.pop(run_id, None)
        if version is not None:
            await self.store.clear_outbox(run_id, version)

    async def _commit(self, old: RunState, new: RunState, step: Step,
                      caused_by: Envelope | None, *, defer_clear: bool = False) -> RunState:
        """Persist ``new`` with the step's messages, then publish them (rule 2)."""
        new.seq, new.step = step.seq, step.number
        new.updated_at = step.now
        new.model_claim = None  # a step was taken: whatever claim led to it is spent
        saved = await self.store.save(old.version, new, step.items)
        if self._sent.get(saved.run_id, saved.version) < saved.version:
            del self._sent[saved.run_id]  # that outbox was replaced by this write
        await self._flush(saved, step.items, caused_by, defer_clear=defer_clear)
        return saved

    async def _load(self, run_id: str, caused_by: Envelope | None) -> RunState | None:
        stored = await self.store.get(run_id)
        if stored is None:
            return None
        return await self._flush(stored.state, stored.outbox, caused_by)

    # -- endings --------------------------------------------------------------------------

    def _end(self, step: Step, new: RunState, *, actor: Actor | None = None,
             children: list[tuple[str, str]] | None = None) -> None:
        """The events and messages of a run that just reached a terminal state."""
        kind = {
            RunStatus.COMPLETED: RunEventKind.RUN_COMPLETED,
            RunStatus.FAILED: RunEventKind.RUN_FAILED,
            RunStatus.CANCELLED: RunEventKind.RUN_CANCELLED,
        }[new.status]
        final = FinalStatus(new.status.value)
        reason = None if final is FinalStatus.COMPLETED else clip(new.failure_reason or kind.value)
        duration = max(0, int((step.now - new.created_at).total_seconds() * 1000))
        step.event(kind, reason=reason, data={"duration_ms": duration})
        completed = RunCompleted(
            run_id=new.run_id,
            session_id=new.session_id,
            agent_id=_ref(new),
            user_id=new.user_id,
            parent_run_id=new.parent_run_id,
            status=final,
            output=new.output,
            structured_output=new.structured_output,
            messages=_chat_messages(new.messages[new.turn_start:]),
            usage=Usage(prompt_tokens=new.prompt_tokens, completion_tokens=new.completion_tokens),
            metrics=RunMetrics(model_calls=new.model_calls, tool_calls=new.tool_calls,
                               duration_ms=duration),
            error=reason,
            completed_at=step.now,
        )
        step.send(RUNS_COMPLETED, completed)
        if new.reply_topic:
            step.send(RUNS_COMPLETED, completed, physical_topic=new.reply_topic, best_effort=True)
        outcome = AuditOutcome.SUCCESS if final is FinalStatus.COMPLETED else AuditOutcome.FAILED
        step.audit(kind.value, ("run", new.run_id), outcome=outcome, actor=actor, reason=reason,
                   details={"agent": _ref(new), "model_calls": new.model_calls,
                            "tool_calls": new.tool_calls})
        if final is not FinalStatus.COMPLETED:
            for child_run_id, child_session in children or self._open_children(new):
                step.send(RUNS_COMMANDS, RunCommand(
                    command_id=deterministic_id(new.run_id, "cancel-child", child_run_id),
                    run_id=child_run_id, session_id=child_session,
                    command=RunCommandKind.CANCEL, actor=SERVICE_ACTOR,
                    reason=clip(f"parent run {new.run_id} {final.value}"), issued_at=step.now,
                ))

    @staticmethod
    def _open_children(run: RunState) -> list[tuple[str, str]]:
        return [
            (c.child_run_id, c.child_session_id)
            for c in run.pending_tool_calls.values()
            if c.status is CallStatus.AWAITING_CHILD and c.child_run_id and c.child_session_id
        ]

    async def _fail(self, run: RunState, reason: str, caused_by: Envelope | None,
                    seq: int | None = None) -> RunState:
        step = self._step(run, seq)
        children = self._open_children(run)
        new = transition(run, Fail(reason=reason), now=step.now)
        self._end(step, new, children=children)
        return await self._commit(run, new, step, caused_by)

    # -- runs.ready -------------------------------------------------------------------------

    async def on_ready(self, delivery: Delivery[RunReady]) -> None:
        ready, caused_by = delivery.message, delivery.envelope
        # A new run is the common case: insert it straight away (the run id is the key)
        # instead of reading first. A repeat's insert fails on the key and the stored run
        # is loaded and driven instead: a no-op unless a crash cut a step.
        run = await self._create(ready, caused_by)
        if run is not None:
            await self._drive(run, caused_by)

    async def _create(self, ready: RunReady, caused_by: Envelope) -> RunState | None:
        req = ready.request
        now = self.clock()
        agent = self.agents.get(route(self.agents, req.agent_id, req.session_id))  # canary
        agent_id, pinned = split_agent_ref(req.agent_id)
        run = RunState(
            run_id=req.run_id, session_id=req.session_id, agent_id=agent_id,
            agent_version=agent.version if agent else (pinned or 0), user_id=req.user_id,
            parent_run_id=req.parent_run_id, depth=req.depth, reply_topic=req.reply_topic,
            created_at=now, updated_at=now, priority=req.priority.value,
        )
        step = self._step(run)
        if agent is None or agent.paused:
            reason = (f"unknown agent '{req.agent_id}'" if agent is None
                      else f"agent '{agent.id}@{agent.version}' is paused: new runs are refused")
            new = transition(run, Fail(reason=reason), now=now)
            self._end(step, new)
            return await self._insert(new, step, caused_by)
        limits = agent.limits
        run.limits = RunLimits(
            max_model_calls=limits.max_model_calls, max_tool_calls=limits.max_tool_calls,
            token_budget=limits.token_budget,
            max_depth=agent.team.max_depth if agent.team else 0,
        )
        run.deadline = now + timedelta(seconds=limits.deadline_seconds)
        new = transition(run, Start(), now=now)
        step.event(RunEventKind.RUN_STARTED, data={
            "agent_version": agent.version, "depth": req.depth,
            "parent_run_id": req.parent_run_id, "deadline": new.deadline.isoformat()
            if new.deadline else None,
        })
        step.audit("run.started", ("run", run.run_id), actor=None,
                   details={"agent": _ref(new), "user_id": req.user_id,
                            "parent_run_id": req.parent_run_id})
        verdict = check_input(req.input, guardrail_policy(agent))
        text = verdict.text
        kinds = sorted({f.kind for f in verdict.findings})
        if verdict.action is GuardrailAction.BLOCK:
            reason = f"input guardrail: {verdict.reason}"
            step.event(RunEventKind.GUARDRAIL_TRIGGERED, reason=reason,
                       data={"stage": "input", "action": "block", "findings": kinds})
            step.audit("guardrail.blocked", ("run", run.run_id), outcome=AuditOutcome.REFUSED,
                       reason=reason, details={"stage": "input", "findings": kinds})
            new = transition(new, Fail(reason=reason), now=now)
            new.messages = [{"role": "user", "content": req.input}]
            self._end(step, new)
            return await self._insert(new, step, caused_by)
        if kinds:
            step.event(RunEventKind.GUARDRAIL_TRIGGERED,
                       reason=verdict.reason or "prompt injection suspected (flagged)",
                       data={"stage": "input", "action": verdict.action.value, "findings": kinds})
        members = ""
        if agent.team is not None:
            lines = []
            for ref in agent.team.members:
                member = self.agents.get(ref)
                desc = member.description if member and member.description else ""
                lines.append(f"- {split_agent_ref(ref)[0]}{': ' + desc if desc else ''}")
            members = "\n".join(lines)
        history = _history(ready.context)
        new.messages = [
            {"role": "system", "content": _system_prompt(agent, ready.context, members)},
            *history,
            {"role": "user", "content": text},
        ]
        new.turn_start = len(new.messages) - 1
        return await self._insert(new, step, caused_by)

    async def _insert(self, new: RunState, step: Step, caused_by: Envelope) -> RunState | None:
        new.seq, new.step = step.seq, step.number
        if not await self.store.create(new, step.items):
            # Another delivery created it first; continue from what it stored.
            return await self._load(new.run_id, caused_by)
        await self._flush(new, step.items, caused_by, defer_clear=True)  # _drive follows
        return new

    # -- the loop ---------------------------------------------------------------------------

    async def _drive(self, run: RunState, caused_by: Envelope | None) -> None:
        try:
            await self._drive_steps(run, caused_by)
        except BaseException:
            # Not cleared: the stored outbox is re-published (same ids) by the redelivery
            # or the sweeper, exactly as after a crash between publish and clear.
            self._sent.pop(run.run_id, None)
            raise
        await self._settle_outbox(run.run_id)

    async def _drive_steps(self, run: RunState, caused_by: Envelope | None) -> None:
        for _ in range(run.limits.max_model_calls + 2):
            if run.terminal:
                return
            if run.status is RunStatus.RUNNING and run.handoff_call_id:
                run = await self._finish_handoff(run, caused_by)
                continue
            decision = next_step(run, self.clock())
            if decision.action in ("wait", "done", "start"):
                return
            if decision.action == "fail":
                run = await self._fail(run, decision.reason or "failed", caused_by)
                return
            claimed = await self._claim_model_call(run)
            if claimed is None:
                return  # another handler is calling the model for this step
            keeper = asyncio.create_task(self._keep_claim(claimed))
            try:
                run = await self._model_step(claimed, caused_by)
            except BaseException:
                keeper.cancel()
                await self._release_claim(claimed)
                raise
            finally:
                keeper.cancel()
                self._calling.discard(claimed.run_id)

    async def _claim_model_call(self, run: RunState) -> RunState | None:
        """Store this handler's claim on the run's next model call; None if it is taken.

        The claim is written with the version check, so of two handlers that read the
        same ``running`` state one stores its claim and the other gets a ConflictError
        (retried: it then finds the claim). A claim of this process that is no longer in
        flight was left by an attempt that failed before persisting its step (the
        redelivery of that very input): it is taken again at once.
        """
        if run.run_id in self._calling:
            return None
        now = self.clock()
        held = run.model_claim
        if held is not None and now < held.until and held.owner != self.instance:
            return None
        claimed = run.model_copy(deep=True)
        claimed.model_claim = ModelClaim(
            owner=self.instance, until=now + timedelta(seconds=self.config.model_claim_s))
        # An outbox of this version that was already published is cleared by this write.
        sent = self._sent.get(run.run_id) == run.version
        self._calling.add(run.run_id)  # before the write: no window for a second claim here
        try:
            saved = await self.store.save(run.version, claimed, [] if sent else None)
        except BaseException:
            self._calling.discard(run.run_id)
            raise
        if sent:
            self._sent.pop(run.run_id, None)
        return saved

    async def _keep_claim(self, claimed: RunState) -> None:
        """Renew the lease while the call runs; stops once the run has moved on."""
        every = self.config.model_claim_s / 3
        while True:
            await asyncio.sleep(every)
            until = self.clock() + timedelta(seconds=self.config.model_claim_s)
            try:
                if not await self.store.extend_claim(claimed.run_id, claimed.version, until):
                    return
            except Exception:  # the next renewal tries again; the lease covers two misses
                log.warning("run %s: could not renew the model-call claim", claimed.run_id,
                            exc_info=True)

    async def _release_claim(self, claimed: RunState) -> None:
        """Best effort after a failed or cancelled step (a shutdown), so the redelivered
        input may call the model at once instead of waiting for the lease to lapse."""
        released = claimed.model_copy(deep=True)
        released.model_claim = None
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.shield(self.store.save(claimed.version, released, None))

    async def _finish_handoff(self, run: RunState, caused_by: Envelope | None) -> RunState:
        assert run.handoff_call_id is not None
        call = run.pending_tool_calls[run.handoff_call_id]
        if call.status is CallStatus.COMPLETED:
            output = call.result if isinstance(call.result, str) else json.dumps(call.result)
            step = self._step(run)
            new = transition(run, Complete(output=output), now=step.now)
            new.messages.append({"role": "assistant", "content": output})
            self._end(step, new)
            return await self._commit(run, new, step, caused_by)
        member = call.arguments.get("member")
        return await self._fail(run, f"routed to {member}, which failed: {call.error}", caused_by)

    def _agent(self, run: RunState) -> AgentDefinition | None:
        return self.agents.get(_ref(run))

    async def _model_step(self, run: RunState, caused_by: Envelope | None) -> RunState:
        agent = self._agent(run)
        if agent is None:
            return await self._fail(run, f"agent '{_ref(run)}' is no longer known", caused_by)
        request = ModelRequest(
            model=agent.model.name, messages=run.messages,
            tools=self.catalog.offered(agent, run), temperature=agent.model.temperature,
            max_tokens=agent.model.max_tokens, base_url=agent.model.base_url,
            deadline=run.deadline, response_schema=agent.output_schema,
        )
        if self.control is not None:
            request = shape(request, self.control)  # degraded mode: no knowledge, fewer tokens

        async def emit(seq: int, text: str) -> None:
            event = RunEvent(run_id=run.run_id, session_id=run.session_id, agent_id=_ref(run),
                             seq=seq, kind=RunEventKind.MODEL_DELTA, at=self.clock(), text=text)
            await self.publisher.publish(
                RUNS_EVENTS, event, caused_by=caused_by, correlation_id=run.run_id,
                message_id=deterministic_id(run.run_id, "delta", str(seq)))

        deltas = DeltaBatcher(emit, start_seq=run.seq, max_ms=self.config.delta_flush_ms,
                              max_chars=self.config.delta_flush_chars)
        try:
            async with self._model_slot(run):
                response = await self.model.complete(request, on_delta=deltas.add)
        except Overloaded as exc:  # refused before the call: the run fails fast, not late
            log.info("run %s refused: %s", run.run_id, exc.reason)
            return await self._fail(run, exc.reason, caused_by, seq=deltas.next_seq)
        except ModelError as exc:
            await deltas.flush()
            log.warning("run %s: model call failed: %s", run.run_id, exc.reason)
            return await self._fail(run, exc.reason, caused_by, seq=deltas.next_seq)
        await deltas.flush()
        return await self._after_model(run, agent, response, deltas, caused_by)

    def _model_slot(self, run: RunState) -> AbstractAsyncContextManager[None]:
        if self.admission is None:
            return contextlib.nullcontext()
        return self.admission.slot(run.priority, continuing=run.model_calls > 0)

    async def _after_model(self, run: RunState, agent: AgentDefinition, response: ModelResponse,
                           deltas: DeltaBatcher, caused_by: Envelope | None) -> RunState:
        step = self._step(run, deltas.next_seq)
        usage = Usage(prompt_tokens=response.usage.prompt_tokens,
                      completion_tokens=response.usage.completion_tokens)
        step.event(RunEventKind.MODEL_COMPLETED, usage=usage, data={
            "model": agent.model.name, "latency_ms": response.latency_ms,
            "ttft_ms": response.time_to_first_token_ms, "attempts": response.attempts,
            "finish_reason": response.finish_reason, "tool_calls": len(response.tool_calls),
            "deltas": deltas.flushes,
        })
        base = run.model_copy(deep=True)
        base.prompt_tokens += usage.prompt_tokens
        base.completion_tokens += usage.completion_tokens
        tokens = response.usage.total_tokens or usage.total_tokens
        if response.tool_calls:
            return await self._request_calls(run, base, agent, response, tokens, step, caused_by)
        output, structured = response.content, response.parsed
        verdict = check_output(output, guardrail_policy(agent))
        new = transition(base, ModelReplied(content=output, tokens=tokens), now=step.now)
        if verdict.action is GuardrailAction.BLOCK:
            reason = f"output guardrail: {verdict.reason}"
            kinds = sorted({f.kind for f in verdict.findings})
            step.event(RunEventKind.GUARDRAIL_TRIGGERED, reason=reason,
                       data={"stage": "output", "action": "block", "findings": kinds})
            step.audit("guardrail.blocked", ("run", run.run_id), outcome=AuditOutcome.REFUSED,
                       reason=reason, details={"stage": "output", "findings": kinds})
            new.messages[-1]["content"] = "[withheld by output guardrail]"
            new = transition(new, Fail(reason=reason), now=step.now)
        else:
            if verdict.action is GuardrailAction.REDACT:
                step.event(RunEventKind.GUARDRAIL_TRIGGERED, reason=verdict.reason,
                           data={"stage": "output", "action": "redact"})
                output = verdict.text
                new.messages[-1]["content"] = output
                structured = None if structured is None else json.loads(
                    check_output(json.dumps(structured), guardrail_policy(agent)).text)
            new = transition(new, Complete(output=output), now=step.now)
            new.structured_output = structured if isinstance(structured, dict) else None
        self._end(step, new)
        return await self._commit(run, new, step, caused_by)

    async def _request_calls(self, run: RunState, base: RunState, agent: AgentDefinition,
                             response: ModelResponse, tokens: int, step: Step,
                             caused_by: Envelope | None) -> RunState:
        over = check_tool_budget(base, len(response.tool_calls))
        if over is not None:
            base.model_calls += 1
            base.tokens_used += tokens
            new = transition(base, Fail(reason=over), now=step.now)
            self._end(step, new)
            return await self._commit(run, new, step, caused_by)
        user_input = next((m["content"] for m in reversed(run.messages)
                           if m.get("role") == "user"), "") or ""
        plan = plan_calls(agent, base, response.tool_calls, self.catalog, user_input)
        new = transition(base, ModelReplied(content=response.content, calls=plan.calls,
                                            tokens=tokens), now=step.now)
        new.handoff_call_id = plan.handoff
        ref = _ref(run)
        for call in plan.calls:
            label = tool_label(call.tool)
            step.event(RunEventKind.TOOL_REQUESTED, call_id=call.call_id, tool=label,
                       child_run_id=call.child_run_id,
                       data={"kind": call.kind, "arguments": sorted(call.arguments)[:32]})
            step.audit("tool.requested", ("tool_call", call.call_id),
                       outcome=AuditOutcome.REFUSED if call.call_id in plan.refused
                       else AuditOutcome.SUCCESS,
                       reason=plan.refused.get(call.call_id),
                       details={"run_id": run.run_id, "tool": label, "agent": ref})
            if call.call_id in plan.refused:
                error = plan.refused[call.call_id]
                new = transition(new, ToolResult(call_id=call.call_id, ok=False, error=error),
                                 now=step.now)
                step.event(RunEventKind.TOOL_COMPLETED, call_id=call.call_id, tool=label,
                           data={"ok": False, "error": clip(error, 200)})
            elif call.requires_approval:
                step.event(RunEventKind.RUN_AWAITING_APPROVAL, call_id=call.call_id,
                           tool=call.tool, data={"arguments": call.arguments})
                step.audit("tool.approval_requested", ("tool_call", call.call_id),
                           details={"run_id": run.run_id, "tool": call.tool, "agent": ref})
            elif call.child_run_id is not None:
                self._send_child(step, new, call.call_id)
            else:
                self._send_call(step, new, call.call_id)
        return await self._commit(run, new, step, caused_by)

    def _send_call(self, step: Step, run: RunState, call_id: str,
                   approved_by: Actor | None = None) -> None:
        call = run.pending_tool_calls[call_id]
        deadline = run.deadline or step.now + timedelta(minutes=5)
        if call.kind == "knowledge":
            top_k = call.arguments.get("top_k")
            step.send(KNOWLEDGE_QUERIES, KnowledgeQuery(
                call_id=call_id, run_id=run.run_id, session_id=run.session_id,
                agent_id=_ref(run), query=str(call.arguments["query"])[:32_000],
                top_k=top_k if isinstance(top_k, int) and 1 <= top_k <= 50 else 5,
            ))
            return
        fields: dict[str, Any] = {}
        if approved_by is not None and "approved_by" in ToolCall.model_fields:
            fields["approved_by"] = approved_by
        step.send(TOOLS_CALLS, ToolCall(
            call_id=call_id, run_id=run.run_id, session_id=run.session_id, agent_id=_ref(run),
            tool=call.tool, arguments=call.arguments, deadline=deadline, **fields,
        ))

    def _send_child(self, step: Step, run: RunState, call_id: str) -> None:
        call = run.pending_tool_calls[call_id]
        assert call.child_run_id and call.child_session_id
        member = str(call.arguments["member"])
        step.event(RunEventKind.RUN_CHILD_STARTED, child_run_id=call.child_run_id,
                   data={"call_id": call_id, "member": member, "mode": call.kind})
        step.audit("run.delegated", ("run", call.child_run_id),
                   details={"parent_run_id": run.run_id, "member": member})
        step.send(RUNS_REQUESTED, RunRequested(
            run_id=call.child_run_id, agent_id=member, session_id=call.child_session_id,
            user_id=run.user_id, input=str(call.arguments["task"])[:32_000],
            parent_run_id=run.run_id, depth=run.depth + 1,
            metadata={"parent_run_id": run.run_id, "parent_session_id": run.session_id,
                      "delegated_by": _ref(run)},
            requested_at=step.now,
        ))

    # -- tools.results ------------------------------------------------------------------------

    async def on_tool_result(self, delivery: Delivery[ToolResultMessage]) -> None:
        msg, caused_by = delivery.message, delivery.envelope
        run = await self._load(msg.run_id, caused_by)
        if run is None:
            log.info("result %s for unknown run %s ignored", msg.call_id, msg.run_id)
            return
        call = run.pending_tool_calls.get(msg.call_id)
        if run.terminal or call is None:
            if call is None:
                log.warning("result for unknown call %s of run %s ignored", msg.call_id,
                            msg.run_id)
            return
        error = None if msg.error is None else f"{msg.error.code.value}: {msg.error.message}"
        event = ToolResult(call_id=msg.call_id, ok=msg.ok, content=_result_content(msg),
                           error=error)
        await self._apply_answer(run, event, caused_by, data={
            "ok": msg.ok, "duration_ms": msg.duration_ms,
            "error_code": msg.error.code.value if msg.error else None})

    async def _apply_answer(self, run: RunState, event: ToolResult, caused_by: Envelope | None,
                            *, data: dict[str, Any], child_run_id: str | None = None) -> None:
        step = self._step(run)
        try:
            new = transition(run, event, now=step.now)
        except IllegalTransition as exc:
            raise PermanentError(exc.reason) from exc
        if new is run:  # already applied: a redelivery; only re-drive (a crash may have cut it)
            await self._drive(run, caused_by)
            return
        call = new.pending_tool_calls[event.call_id]
        if child_run_id is not None:
            step.event(RunEventKind.RUN_CHILD_COMPLETED, child_run_id=child_run_id,
                       data={"call_id": event.call_id, "ok": event.ok})
        step.event(RunEventKind.TOOL_COMPLETED, call_id=event.call_id, tool=tool_label(call.tool),
                   data=data)
        saved = await self._commit(run, new, step, caused_by, defer_clear=True)
        await self._drive(saved, caused_by)

    # -- runs.completed (children) ---------------------------------------------------------

    async def on_run_completed(self, delivery: Delivery[RunCompleted]) -> None:
        msg, caused_by = delivery.message, delivery.envelope
        if not is_child_completion(msg) or msg.parent_run_id is None:
            return
        parent = await self._load(msg.parent_run_id, caused_by)
        if parent is None or parent.terminal:
            return
        call_id = next((cid for cid, c in parent.pending_tool_calls.items()
                        if c.child_run_id == msg.run_id), None)
        if call_id is None:
            log.warning("completion of unknown child %s of run %s ignored", msg.run_id,
                        msg.parent_run_id)
            return
        ok = msg.status is FinalStatus.COMPLETED
        content: Any = msg.output if msg.structured_output is None else msg.structured_output
        event = ToolResult(call_id=call_id, ok=ok, content=content,
                           error=None if ok else f"child run {msg.status.value}: {msg.error}")
        await self._apply_answer(parent, event, caused_by, child_run_id=msg.run_id, data={
            "ok": ok, "duration_ms": msg.metrics.duration_ms, "child_run_id": msg.run_id})

    # -- runs.commands ------------------------------------------------------------------------

    async def on_command(self, delivery: Delivery[RunCommand]) -> None:
        cmd, caused_by = delivery.message, delivery.envelope
        run = await self._load(cmd.run_id, caused_by)
        if run is None or run.terminal:
            log.info("command %s for %s run %s ignored", cmd.command.value,
                     "unknown" if run is None else run.status.value, cmd.run_id)
            return
        step = self._step(run)
        if cmd.command is RunCommandKind.CANCEL:
            children = self._open_children(run)
            new = transition(run, Cancel(reason=clip(
                f"cancelled by {cmd.actor.kind.value}:{cmd.actor.id}"
                + (f": {cmd.reason}" if cmd.reason else "")) or "cancelled"), now=step.now)
            self._end(step, new, actor=cmd.actor, children=children)
            await self._commit(run, new, step, caused_by)
            return
        awaiting = [c for c in run.batch
                    if run.pending_tool_calls[c].status is CallStatus.AWAITING_APPROVAL]
        call_id = cmd.call_id or (awaiting[0] if awaiting else None)
        if call_id is None or call_id not in awaiting:
            log.info("%s of run %s ignored: no such call awaiting approval", cmd.command.value,
                     cmd.run_id)
            return
        call = run.pending_tool_calls[call_id]
        who = f"{cmd.actor.kind.value}:{cmd.actor.id}"
        if cmd.command is RunCommandKind.APPROVE:
            new = transition(run, Approve(call_id=call_id), now=step.now)
            step.audit("tool.approved", ("tool_call", call_id), actor=cmd.actor,
                       reason=cmd.reason, details={"run_id": run.run_id, "tool": call.tool})
            step.event(RunEventKind.RUN_RESUMED, call_id=call_id, tool=call.tool,
                       data={"approved_by": who})
            self._send_call(step, new, call_id, approved_by=cmd.actor)
            saved = await self._commit(run, new, step, caused_by, defer_clear=True)
            await self._drive(saved, caused_by)
            return
        reason = f"tool call '{call.tool}' rejected by {who}" + (
            f": {cmd.reason}" if cmd.reason else "")
        new = transition(run, Reject(call_id=call_id, reason=reason), now=step.now)
        step.audit("tool.rejected", ("tool_call", call_id), actor=cmd.actor,
                   outcome=AuditOutcome.REFUSED, reason=reason,
                   details={"run_id": run.run_id, "tool": call.tool})
        children = self._open_children(new)
        new = transition(new, Fail(reason=reason), now=step.now)
        self._end(step, new, actor=cmd.actor, children=children)
        await self._commit(run, new, step, caused_by)

    # -- the sweeper --------------------------------------------------------------------------

    async def _redrive(self, run_id: str) -> None:
        """Drive a running run whose model-call claim lapsed (its holder died mid-call)."""
        stored = await self.store.get(run_id)
        if stored is None or stored.state.status is not RunStatus.RUNNING:
            return
        log.warning("run %s: model-call claim lapsed; driving it again", run_id)
        await self._drive(await self._flush(stored.state, stored.outbox, None), None)

    async def sweep(self) -> int:
        """Fail runs past their deadline; re-drive runs whose model-call claimant is gone;
        re-publish outboxes a crash left behind. Returns how many runs were failed."""
        now = self.clock()
        swept = 0
        before = now - timedelta(seconds=self.config.outbox_redrive_after_s)
        found = await self.store.sweepable(now, _WAITING_OR_ACTIVE, before)
        for run_id in found.due:
            stored = await self.store.get(run_id)
            if stored is None:
                continue
            run = stored.state
            if run.terminal or run.deadline is None or now < run.deadline:
                continue
            if run.status in (RunStatus.RUNNING, RunStatus.REQUESTED) and now < (
                run.deadline + timedelta(seconds=self.config.running_grace_s)
            ):
                continue  # a model call in flight is bounded by the deadline itself
            what = run.status.value.replace("_", " ")
            try:
                await self._flush(run, stored.outbox, None)
                await self._fail(run, f"deadline exceeded while {what} "
                                 f"(deadline {run.deadline.isoformat()})", None)
                swept += 1
            except ConflictError:
                continue  # someone else moved it; the next sweep looks again
        stalled = found.stalled
        for run_id, outcome in zip(stalled, await asyncio.gather(
                *(self._redrive(run_id) for run_id in stalled), return_exceptions=True),
                strict=True):
            if isinstance(outcome, Exception) and not isinstance(outcome, ConflictError):
                log.warning("run %s: re-driving it failed: %s", run_id, outcome)
        for run_id in found.unpublished:
            stored = await self.store.get(run_id)
            if stored is not None and stored.outbox:
                await self._flush(stored.state, stored.outbox, None)
        return swept


assert frozenset(_WAITING_OR_ACTIVE) | TERMINAL == frozenset(RunStatus)
