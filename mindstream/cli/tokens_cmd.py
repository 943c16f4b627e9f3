"""``mindstream tokens create|list|revoke``: API tokens of the control plane.

Works on MongoDB directly (``MONGODB_URI``), so the first admin token can be
made before any token exists, and publishes an audit event for each change
to Kafka (actor ``user:cli-<login>``). The token is printed once, on create;
only its hash is stored.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import re
from typing import Any

from mindstream.cli.errors import CliError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tokens = sub.add_parser("tokens", help="create, list or revoke control-plane API tokens")
    tokens_sub = tokens.add_subparsers(dest="tokens_command", metavar="ACTION", required=True)
    create = tokens_sub.add_parser("create", help="create a token and print it (once)")
    create.add_argument("--name", required=True, help="what the token is for")
    create.add_argument("--scope", required=True, choices=("viewer", "operator", "admin"))
    create.set_defaults(handler=_create)
    tokens_sub.add_parser("list", help="list tokens (never their secrets)").set_defaults(
        handler=_list)
    revoke = tokens_sub.add_parser("revoke", help="revoke a token by id")
    revoke.add_argument("token_id")
    revoke.set_defaults(handler=_revoke)


def cli_actor() -> str:
    login = re.sub(r"[^A-Za-z0-9._-]", "-", getpass.getuser() or "unknown")[:100]
    return f"cli-{login}"


async def _with_store(action: Any) -> Any:
    from services.control_plane.store import INDEXES
    from services.control_plane.tokens import TokenStore
    from shared.mongo import ensure_indexes, make_client
    from shared.settings import MongoSettings

    settings = MongoSettings()
    client = make_client(settings, app_name="mindstream-cli")
    try:
        db = client[settings.database]
        await ensure_indexes(db, INDEXES)
        return await action(TokenStore(db))
    finally:
        await client.close()


async def _audit(action: str, token_id: str, details: dict[str, Any]) -> str | None:
    """Publish the audit event; returns why it failed, if it did (the change stays made)."""
    from schemas.common import Actor, ActorKind
    from shared.audit import AuditEmitter
    from shared.kafka.broker import make_broker
    from shared.kafka.publisher import Publisher
    from shared.settings import KafkaSettings

    kafka = KafkaSettings()
    broker = make_broker(kafka, client_id="mindstream-cli")
    try:
        await broker.start()
        publisher = Publisher(broker, source="mindstream/cli", topic_prefix=kafka.topic_prefix)
        await AuditEmitter(publisher, "cli").emit(
            action, ("token", token_id), actor=Actor(kind=ActorKind.USER, id=cli_actor()),
            details=details)
    except Exception as exc:  # any broker failure: the token change itself is done
        return f"{type(exc).__name__}: {exc}"
    finally:
        await broker.stop()
    return None


def _run(coro: Any) -> Any:
    from pymongo.errors import PyMongoError

    try:
        return asyncio.run(coro)
    except PyMongoError as exc:
        raise CliError(f"cannot reach MongoDB: {exc}") from exc


def _create(args: argparse.Namespace) -> int:
    from services.control_plane.tokens import Scope

    async def create() -> tuple[dict[str, Any], str, str | None]:
        record, token = await _with_store(lambda store: store.create(
            args.name, Scope(args.scope), created_by=cli_actor()))
        failure = await _audit("token.create", record["id"],
                               {"name": args.name, "scope": args.scope})
        return record, token, failure

    record, token, failure = _run(create())
    print(token)
    print(f"created token {record['id']} ({record['scope']}, {record['name']}); "
          "store it now: it is not shown again")
    if failure:
        print(f"warning: audit event not published: {failure}")
        return 1
    return 0


def _list(_args: argparse.Namespace) -> int:
    tokens = _run(_with_store(lambda store: store.list_tokens()))
    print(f"{'id':<16}  {'scope':<8}  {'created':<19}  {'state':<8}  name")
    for t in tokens:
        state = "revoked" if t["revoked_at"] else "active"
        created = t["created_at"].strftime("%Y-%m-%d %H:%M:%S") if t["created_at"] else "-"
        print(f"{t['id']:<16}  {t['scope']:<8}  {created:<19}  {state:<8}  {t['name']}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    async def revoke() -> tuple[dict[str, Any] | None, str | None]:
        record = await _with_store(lambda store: store.revoke(args.token_id,
                                                              revoked_by=cli_actor()))
        if record is None:
            return None, None
        return record, await _audit("token.revoke", args.token_id, {})

    record, failure = _run(revoke())
    if record is None:
        raise CliError(f"no token {args.token_id}", 1)
    print(f"revoked token {args.token_id}")
    if failure:
        print(f"warning: audit event not published: {failure}")
        return 1
    return 0
