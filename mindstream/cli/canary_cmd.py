"""``mindstream canary start|promote|rollback|status``: try a new agent version on a share of sessions.

    mindstream canary start assistant -f agents/assistant.yaml --share 0.1   # publish + canary
    mindstream canary start assistant --candidate 3 --share 0.2 [--stable 2] # already published
    mindstream canary status assistant
    mindstream canary promote assistant      # the candidate serves every session
    mindstream canary rollback assistant     # every new session back on the stable version

The rollout rides on the agent's newest definition on the agents topic, so every
reasoning replica routes sessions the same way; the control plane judges the
candidate against the stable version per window and rolls back on its own when
the gate fails twice in a row (never promotes). Every change is audited.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from mindstream.cli.errors import CliError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    canary = sub.add_parser("canary", help="canary rollouts of agent versions")
    c_sub = canary.add_subparsers(dest="canary_command", metavar="ACTION", required=True)
    start = c_sub.add_parser("start", help="send a share of new sessions to a candidate version")
    start.add_argument("agent", help="agent id")
    which = start.add_mutually_exclusive_group(required=True)
    which.add_argument("--candidate", type=int, help="an already published version (the newest)")
    which.add_argument("-f", "--file", help="publish this definition as the candidate")
    start.add_argument("--share", type=float, required=True, help="share of sessions, e.g. 0.1")
    start.add_argument("--stable", type=int, default=None,
                       help="version the other sessions keep (default: the one before)")
    start.set_defaults(handler=_start)
    for name, text in (("promote", "the candidate serves every session"),
                       ("rollback", "every new session goes back to the stable version")):
        p = c_sub.add_parser(name, help=text)
        p.add_argument("agent", help="agent id")
        p.add_argument("--reason", default=None, help="why, for the audit trail")
        p.set_defaults(handler=_promote if name == "promote" else _rollback)
    status = c_sub.add_parser("status", help="the rollout and the gate's recent verdicts")
    status.add_argument("agent", help="agent id")
    status.set_defaults(handler=_status)


def _actor() -> Any:
    from schemas.common import Actor, ActorKind

    who = re.sub(r"[^A-Za-z0-9._:@-]", "_", getpass.getuser() or "cli")[:100] or "cli"
    return Actor(kind=ActorKind.USER, id=f"cli:{who}")


async def _newest(agent_id: str) -> Any:
    from shared.agent_registry import AgentRegistry
    from shared.settings import KafkaSettings

    registry = AgentRegistry()
    await registry.load(KafkaSettings(), timeout_s=15.0)
    newest = registry.get(agent_id)
    if newest is None:
        raise CliError(f"no agent '{agent_id}' on the agents topic", exit_code=1)
    return newest


async def _publish(definition: Any, action: str, reason: str | None, before: Any) -> None:
    from schemas.topics import AGENTS
    from shared.audit import AuditEmitter
    from shared.kafka.broker import make_broker
    from shared.kafka.publisher import Publisher
    from shared.settings import KafkaSettings

    settings = KafkaSettings()
    broker = make_broker(settings, client_id="mindstream-cli")
    publisher = Publisher(broker, source="mindstream/cli", topic_prefix=settings.topic_prefix)
    await broker.start()
    try:
        await publisher.publish(AGENTS, definition, message_id=f"agent-{uuid.uuid4().hex}")
        rollout = definition.rollout or before.rollout
        await AuditEmitter(publisher, "cli").emit(
            action, ("agent", definition.id), actor=_actor(), reason=reason,
            before=before.model_dump(mode="json"), after=definition.model_dump(mode="json"),
            details={"version": definition.version,
                     **({"stable_version": rollout.stable_version,
                         "candidate_version": rollout.candidate_version,
                         "candidate_share": rollout.candidate_share} if rollout else {})})
    finally:
        await broker.stop()


def _run(coro: Any) -> Any:
    from mindstream.cli.versioned import run_with_kafka

    return run_with_kafka(coro)


def _refused(exc: ValueError) -> CliError:
    return CliError(str(exc), exit_code=1)


async def _do_start(args: argparse.Namespace) -> str:
    from services.control_plane.canary import started

    if not 0.0 < args.share < 1.0:
        raise CliError("--share must be between 0 and 1 (exclusive), e.g. 0.1")
    newest = await _newest(args.agent)
    now = datetime.now(UTC)
    before = newest
    if args.file:
        from mindstream.cli.agents_cmd import load_definitions, plan

        ((_path, raw, definition),) = load_definitions([args.file])
        if definition.id != args.agent:
            raise CliError(f"{args.file} defines '{definition.id}', not '{args.agent}'")
        action, version = plan(newest, raw, definition)
        if action == "unchanged":
            raise CliError(f"{args.file} is the same as {newest.id}@{newest.version}; "
                           f"use --candidate {newest.version}")
        stable = args.stable or newest.version
        newest = definition.model_copy(update={"version": version, "updated_at": now})
    else:
        stable = args.stable or args.candidate - 1
    try:
        changed = started(newest, candidate=args.candidate or newest.version, stable=stable,
                          share=args.share, now=now)
    except ValueError as exc:
        raise _refused(exc) from exc
    await _publish(changed, "agent.canary.started", None, before)
    return (f"canary started: {changed.id}@{changed.version} on {args.share:.0%} of new sessions, "
            f"@{stable} on the rest")


def _start(args: argparse.Namespace) -> int:
    print(_run(_do_start(args)))
    return 0


async def _do_end(args: argparse.Namespace, promote: bool) -> str:
    from services.control_plane.canary import promoted, rolled_back

    newest = await _newest(args.agent)
    now = datetime.now(UTC)
    try:
        if promote:
            changed = promoted(newest, now=now)
        else:
            changed = rolled_back(newest, reason=args.reason or "rolled back by an operator",
                                  now=now)
    except ValueError as exc:
        raise _refused(exc) from exc
    rollout = newest.rollout
    await _publish(changed, "agent.canary.promoted" if promote else "agent.canary.rolled_back",
                   args.reason, newest)
    if promote:
        return f"promoted: {changed.id}@{rollout.candidate_version} serves every session"
    return f"rolled back: {changed.id}@{rollout.stable_version} serves every new session"


def _promote(args: argparse.Namespace) -> int:
    print(_run(_do_end(args, True)))
    return 0


def _rollback(args: argparse.Namespace) -> int:
    print(_run(_do_end(args, False)))
    return 0


async def _windows(canary_prefix: str) -> list[Any]:
    from pymongo import AsyncMongoClient

    from services.control_plane.canary import CANARY_WINDOWS
    from shared.settings import MongoSettings

    settings = MongoSettings()
    client: Any = AsyncMongoClient(settings.uri.get_secret_value(), tz_aware=True,
                                   serverSelectionTimeoutMS=settings.timeout_ms)
    try:
        coll = client[settings.database][CANARY_WINDOWS]
        return await coll.find({"canary": {"$regex": f"^{re.escape(canary_prefix)}"}}).sort(
            "judged_at", -1).limit(10).to_list()
    finally:
        await client.close()


def _status(args: argparse.Namespace) -> int:
    from pymongo.errors import PyMongoError

    newest = _run(_newest(args.agent))
    r = newest.rollout
    if r is None:
        print(f"{newest.id}@{newest.version}: no canary; this version serves every session")
        return 0
    print(f"{newest.id}: canary {r.state.value}, started {r.started_at:%Y-%m-%d %H:%M:%S} UTC")
    print(f"  candidate @{r.candidate_version}: {r.candidate_share:.0%} of new sessions"
          + (" (rolled back: none now)" if r.state.value == "rolled_back" else ""))
    print(f"  stable    @{r.stable_version}: the rest")
    if r.reason:
        print(f"  reason: {r.reason}")
    try:
        windows = asyncio.run(_windows(f"{newest.id}:{r.candidate_version}:"))
    except PyMongoError as exc:
        print(f"  (gate verdicts unavailable: {exc})")
        return 0
    for w in windows:
        c, s = w["candidate"], w["stable"]
        print(f"  {w['end']:%H:%M:%S} {w['verdict']:<12} streak {w['streak']}  "
              f"candidate {c['failed']}/{c['runs']} failed  stable {s['failed']}/{s['runs']} failed"
              + (f"  ({'; '.join(w['reasons'])})" if w["reasons"] else ""))
    return 0
