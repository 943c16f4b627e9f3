"""The tools a model is offered, and what each call it makes turns into.

Schemas of ordinary tools come from the same ``TOOLS`` modules the tools service
runs (:func:`services.tools.registry.discover`), imported once at start; a tool
that is allowed but not found gets a permissive schema, since the tools service
validates arguments anyway. Three pseudo-tools are reasoning's own:
``knowledge_search`` (agents with ``knowledge``; becomes a KnowledgeQuery),
``delegate`` (coordinate teams; becomes a child run whose answer is the result),
``route_to`` (route teams; becomes a child run whose answer is the run's answer)
and ``broadcast`` (broadcast teams; one call becomes one delegation per member,
all in parallel, and the leader composes their answers from the results).

The allowlist is checked here (least agency) and again by the tools service.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from schemas.agents import AgentDefinition, TeamMode, split_agent_ref
from schemas.envelope import deterministic_id
from schemas.knowledge import KNOWLEDGE_TOOL
from services.reasoning.model import ModelToolCall
from services.reasoning.state import RequestedCall, RunState

__all__ = ["DELEGATE_TOOL", "ROUTE_TOOL", "Plan", "ToolCatalog", "child_session", "plan_calls"]

log = logging.getLogger("mindstream.reasoning.tools")

DELEGATE_TOOL = "delegate"
ROUTE_TOOL = "route_to"
BROADCAST_TOOL = "broadcast"
_ANY_OBJECT: dict[str, Any] = {"type": "object", "additionalProperties": True}


def _function(name: str, description: str, parameters: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": parameters},
    }


@dataclass(frozen=True)
class ToolCatalog:
    schemas: dict[str, dict[str, Any]]
    approval: frozenset[str] = frozenset()  # tools whose own spec requires approval

    @classmethod
    def discover(cls, modules: Sequence[str]) -> ToolCatalog:
        """Schemas of every tool in ``modules``; a module that fails to load is skipped."""
        try:
            from services.tools.registry import discover
        except Exception as exc:  # the tools package is optional for this service
            log.warning("tool schemas unavailable (%s); allowed tools get open schemas", exc)
            return cls({})
        schemas: dict[str, dict[str, Any]] = {}
        approval: set[str] = set()
        for module in modules:
            try:
                registry = discover([module])
            except Exception as exc:
                log.warning("skipping tool module %s: %s", module, exc)
                continue
            for spec in registry:
                schemas[spec.name] = spec.openai_schema()
                if spec.requires_approval:
                    approval.add(spec.name)
        return cls(schemas, frozenset(approval))

    def schema(self, name: str) -> dict[str, Any]:
        return self.schemas.get(name) or _function(name, f"The {name} tool.", _ANY_OBJECT)

    def needs_approval(self, agent: AgentDefinition, name: str) -> bool:
        return name in agent.require_approval or name in self.approval

    def offered(self, agent: AgentDefinition, run: RunState) -> list[dict[str, Any]]:
        """The tool list sent to the model for ``agent`` at this run's depth."""
        tools = [self.schema(name) for name in agent.tools]
        if agent.knowledge:
            tools.append(
                _function(
                    KNOWLEDGE_TOOL,
                    "Search the knowledge base; returns the most relevant passages.",
                    {
                        "type": "object",
                        "properties": {
                            "query": {"type": "string", "description": "What to look for."},
                            "top_k": {"type": "integer", "minimum": 1, "maximum": 20},
                        },
                        "required": ["query"],
                    },
                )
            )
        team = agent.team
        if team is not None and run.depth + 1 <= team.max_depth:
            members = [split_agent_ref(m)[0] for m in team.members]
            member = {"type": "string", "enum": members, "description": "Team member id."}
            if team.mode is TeamMode.ROUTE:
                tools.append(
                    _function(
                        ROUTE_TOOL,
                        "Hand the request over to the one team member best suited to "
                        "answer it; the member's answer becomes the final answer.",
                        {
                            "type": "object",
                            "properties": {
                                "member": member,
                                "task": {"type": "string", "description": "What to ask."},
                            },
                            "required": ["member"],
                        },
                    )
                )
            elif team.mode is TeamMode.BROADCAST:
                tools.append(
                    _function(
                        BROADCAST_TOOL,
                        "Send one task to every team member at once; each member's answer "
                        "comes back as a result, so you can compose them into one answer.",
                        {
                            "type": "object",
                            "properties": {
                                "task": {"type": "string", "description": "The task for all."},
                            },
                            "required": ["task"],
                        },
                    )
                )
            else:
                tools.append(
                    _function(
                        DELEGATE_TOOL,
                        "Delegate a subtask to a team member; the member's answer comes "
                        "back as this call's result. Several delegations run in parallel.",
                        {
                            "type": "object",
                            "properties": {
                                "member": member,
                                "task": {"type": "string", "description": "The subtask."},
                            },
                            "required": ["member", "task"],
                        },
                    )
                )
        return tools


def child_session(session_id: str, member: str) -> str:
    """The session of a child run: its own conversation, traceable to the parent's."""
    candidate = f"{session_id}:{member}"
    if len(candidate) <= 128:
        return candidate
    return f"{session_id[:80]}:{hashlib.sha256(candidate.encode()).hexdigest()[:40]}"


@dataclass
class Plan:
    """The calls of one model reply: what to request, and what fails right away."""

    calls: list[RequestedCall]
    refused: dict[str, str]  # call_id -> error given to the model at once
    handoff: str | None = None


def _member_ref(agent: AgentDefinition, member: str) -> str | None:
    assert agent.team is not None
    for ref in agent.team.members:
        if split_agent_ref(ref)[0] == member or ref == member:
            return ref
    return None


def plan_calls(  # noqa: PLR0912 - one branch per kind of call reads best flat
    agent: AgentDefinition,
    run: RunState,
    calls: list[ModelToolCall],
    catalog: ToolCatalog,
    user_input: str,
) -> Plan:
    plan = Plan([], {})
    delegations = 0
    team = agent.team
    calls = _expand_broadcasts(agent, calls)
    for index, call in enumerate(calls):
        call_id = deterministic_id(run.run_id, "call", str(run.model_calls), str(index), call.id)
        kind: Literal["tool", "knowledge", "delegate", "handoff"] = "tool"
        error: str | None = None
        child_run_id = child_sess = None
        args = dict(call.arguments)
        if call.name == KNOWLEDGE_TOOL and agent.knowledge:
            kind = "knowledge"
            if not isinstance(args.get("query"), str) or not args["query"].strip():
                error = "invalid_arguments: 'query' must be a non-empty string"
        elif team is not None and call.name in (DELEGATE_TOOL, ROUTE_TOOL):
            kind = "delegate" if call.name == DELEGATE_TOOL else "handoff"
            wanted_mode = TeamMode.ROUTE if kind == "handoff" else TeamMode.COORDINATE
            member = args.get("member")
            ref = _member_ref(agent, member) if isinstance(member, str) else None
            task = args.get("task") or (user_input if kind == "handoff" else None)
            if team.mode is not wanted_mode and not (
                team.mode is TeamMode.BROADCAST and kind == "delegate"
            ):
                error = f"not_allowed: '{call.name}' is not available in {team.mode.value} mode"
            elif ref is None:
                error = f"invalid_arguments: unknown team member {member!r}"
            elif not isinstance(task, str) or not task.strip():
                error = "invalid_arguments: 'task' must be a non-empty string"
            elif run.depth + 1 > team.max_depth:
                error = f"not_allowed: delegation depth limit {team.max_depth} reached"
            elif delegations >= team.max_fanout:
                error = f"not_allowed: at most {team.max_fanout} delegations at once"
            elif kind == "handoff" and plan.handoff is not None:
                error = "not_allowed: a request can be handed over to one member only"
            else:
                delegations += 1
                args = {"member": ref, "task": task}
                child_run_id = deterministic_id(run.run_id, "child", call_id)
                child_sess = child_session(run.session_id, split_agent_ref(ref)[0])
                if kind == "handoff":
                    plan.handoff = call_id
        elif call.name not in agent.tools:
            error = f"not_allowed: tool '{call.name}' is not allowed for agent '{agent.id}'"
        if error is not None:
            plan.refused[call_id] = error
            child_run_id = child_sess = None
        plan.calls.append(
            RequestedCall(
                call_id=call_id,
                tool=call.name,
                arguments=args,
                requires_approval=error is None
                and kind == "tool"
                and catalog.needs_approval(agent, call.name),
                child_run_id=child_run_id,
                child_session_id=child_sess,
                kind=kind,
            )
        )
    return plan


def _expand_broadcasts(agent: AgentDefinition, calls: list[ModelToolCall]
                       ) -> list[ModelToolCall]:
    """A broadcast team's ``broadcast(task)`` becomes ``delegate(member, task)`` per member.

    The delegations then go through the same checks and child-run machinery as a
    coordinate team's, and the model sees one delegate call and result per member.
    Depth and fan-out limits still apply (a refused delegation comes back as an error).
    """
    team = agent.team
    if team is None or team.mode is not TeamMode.BROADCAST:
        return calls
    expanded: list[ModelToolCall] = []
    for call in calls:
        if call.name != BROADCAST_TOOL:
            expanded.append(call)
            continue
        task = call.arguments.get("task")
        for member in team.members:
            name = split_agent_ref(member)[0]
            expanded.append(call.model_copy(update={
                "id": f"{call.id}-{name}"[:128], "name": DELEGATE_TOOL,
                "arguments": {"member": name, "task": task}}))
    return expanded
