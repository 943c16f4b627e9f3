"""``mindstream knowledge add`` and ``mindstream memories list|delete``.

``knowledge add`` publishes :class:`~schemas.knowledge.KnowledgeDocument`
messages; the memory service ingests them (an unchanged file is a no-op, a
changed one replaces its chunks). ``memories`` acts on the memory service's
own store (MongoDB settings from the environment, as the service reads
them); every deletion is announced on the audit topic, so Kafka must be
reachable before anything is deleted.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import re
from pathlib import Path
from typing import Any

from mindstream.cli.errors import CliError

_ID_BAD = re.compile(r"[^A-Za-z0-9._:@-]+")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    knowledge = sub.add_parser("knowledge", help="add documents to the knowledge base")
    k_sub = knowledge.add_subparsers(dest="knowledge_command", metavar="ACTION", required=True)
    add = k_sub.add_parser("add", help="publish files as knowledge documents")
    add.add_argument("files", nargs="+", type=Path, metavar="FILE")
    add.add_argument("--title", help="document title (default: first Markdown heading or file name)")
    add.add_argument("--id", dest="document_id",
                     help="document id (default: derived from the path; one FILE only)")
    add.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                     help="metadata label knowledge queries can filter on (repeatable)")
    add.set_defaults(handler=_knowledge_add)

    memories = sub.add_parser("memories", help="list or delete what memory learned about a user")
    m_sub = memories.add_subparsers(dest="memories_command", metavar="ACTION", required=True)
    listing = m_sub.add_parser("list", help="list a user's memories")
    listing.add_argument("--user", required=True)
    listing.set_defaults(handler=_memories_list)
    delete = m_sub.add_parser("delete", help="delete one or all of a user's memories (audited)")
    delete.add_argument("--user", required=True)
    which = delete.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", dest="memory_id", help="the memory to delete")
    which.add_argument("--all", action="store_true", help="every memory of the user")
    delete.add_argument("--actor", default=None, help="who deletes, for the audit log "
                        "(default: the OS user)")
    delete.set_defaults(handler=_memories_delete)


# -- knowledge add ----------------------------------------------------------------


def document_id_for(path: Path) -> str:
    """A stable id from a path: safe characters only, at most 128 (the contract's Id)."""
    text = _ID_BAD.sub("-", path.as_posix().lstrip("./")).strip("-") or "document"
    return text[-128:].lstrip("-.") or "document"


def _title(text: str, path: Path) -> str:
    for line in text.splitlines():
        if line.startswith("# "):
            return line[2:].strip()[:1024]
    return path.stem[:1024]


def _labels(raw: list[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in raw:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"--label {item!r} is not KEY=VALUE")
        labels[key] = value
    return labels


def _documents(args: argparse.Namespace) -> list[Any]:
    from pydantic import ValidationError

    from schemas.knowledge import MAX_DOCUMENT_CHARS, KnowledgeDocument

    if args.document_id and len(args.files) > 1:
        raise CliError("--id names one document; give one FILE with it")
    labels = _labels(args.label)
    documents = []
    for path in args.files:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise CliError(f"{path}: no such file") from None
        except UnicodeDecodeError:
            raise CliError(f"{path}: not UTF-8 text") from None
        except OSError as exc:
            raise CliError(f"{path}: cannot read: {exc.strerror or exc}") from None
        if not text.strip():
            raise CliError(f"{path}: file is empty")
        if len(text) > MAX_DOCUMENT_CHARS:
            raise CliError(f"{path}: {len(text)} characters, above the limit of "
                           f"{MAX_DOCUMENT_CHARS}; split the file")
        try:
            documents.append(KnowledgeDocument(
                document_id=args.document_id or document_id_for(path),
                source=str(path)[:1024], title=args.title or _title(text, path),
                text=text, metadata=labels,
            ))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            raise CliError(f"{path}: invalid document: {where}: {first.get('msg')}") from None
    return documents


async def _publish(messages: list[tuple[Any, Any]]) -> None:
    from aiokafka.errors import KafkaError, UnknownTopicOrPartitionError

    from schemas.topics import KNOWLEDGE_DOCUMENTS
    from shared.kafka.broker import make_broker
    from shared.kafka.publisher import Publisher
    from shared.settings import KafkaSettings

    kafka = KafkaSettings()
    broker = make_broker(kafka, "mindstream-cli")
    try:
        await asyncio.wait_for(broker.start(), timeout=kafka.request_timeout_ms / 1000)
    except (KafkaError, OSError, TimeoutError) as exc:
        await broker.stop()
        raise CliError(f"cannot reach Kafka at {kafka.bootstrap_servers}: {exc or 'timeout'} "
                       "(is it running? `mindstream dev up`)", exit_code=1) from exc
    try:
        publisher = Publisher(broker, source="mindstream/cli", topic_prefix=kafka.topic_prefix)
        for spec, message in messages:
            await publisher.publish(spec, message)
    except UnknownTopicOrPartitionError as exc:
        raise CliError(f"topic {kafka.topic_prefix}{KNOWLEDGE_DOCUMENTS.name} does not exist "
                       "(run `mindstream topics apply`)", exit_code=1) from exc
    except (KafkaError, OSError) as exc:
        raise CliError(f"publishing to Kafka failed: {exc}", exit_code=1) from exc
    finally:
        await broker.stop()


def _knowledge_add(args: argparse.Namespace) -> int:
    from schemas.errors import ContractError
    from schemas.topics import KNOWLEDGE_DOCUMENTS

    documents = _documents(args)
    try:
        asyncio.run(_publish([(KNOWLEDGE_DOCUMENTS, d) for d in documents]))
    except ContractError as exc:
        raise CliError(f"document too large for one message: {exc}", exit_code=1) from None
    for document in documents:
        print(f"published {document.document_id}  ({len(document.text)} chars)  "
              f"{document.source}")
    return 0


# -- memories ------------------------------------------------------------------------


async def _with_store(action: Any) -> Any:
    from pymongo.errors import PyMongoError

    from services.memory.store import MemoryStore
    from shared.mongo import make_client
    from shared.settings import MongoSettings

    mongo = MongoSettings()
    client = make_client(mongo, app_name="mindstream-cli")
    try:
        return await action(MemoryStore(client[mongo.database]))
    except PyMongoError as exc:
        raise CliError(f"MongoDB error ({mongo.database}): {str(exc).splitlines()[0][:200]} "
                       "(is it running? `mindstream dev up`)", exit_code=1) from exc
    finally:
        await client.close()


def _memories_list(args: argparse.Namespace) -> int:
    async def action(store: Any) -> list[Any]:
        memories: list[Any] = await store.memories_of(args.user)
        return memories

    memories = asyncio.run(_with_store(action))
    if not memories:
        print(f"no memories for user {args.user}")
        return 0
    for memory in memories:
        updated = memory.updated_at.strftime("%Y-%m-%d %H:%M")
        print(f"{memory.id}  {memory.topic:<24} v{memory.version}  {updated}  {memory.text}")
    return 0


async def _delete(args: argparse.Namespace) -> list[Any]:
    from aiokafka.errors import KafkaError

    from schemas.common import Actor, ActorKind
    from shared.audit import AuditEmitter
    from shared.kafka.broker import make_broker
    from shared.kafka.publisher import Publisher
    from shared.settings import KafkaSettings

    kafka = KafkaSettings()
    broker = make_broker(kafka, "mindstream-cli")
    try:  # before deleting anything: a deletion must not go unaudited
        await asyncio.wait_for(broker.start(), timeout=kafka.request_timeout_ms / 1000)
    except (KafkaError, OSError, TimeoutError) as exc:
        await broker.stop()
        raise CliError(f"cannot reach Kafka at {kafka.bootstrap_servers} to audit the deletion: "
                       f"{exc or 'timeout'}; nothing was deleted", exit_code=1) from exc
    try:
        ids = None if args.all else [args.memory_id]

        async def action(store: Any) -> list[Any]:
            deleted: list[Any] = await store.delete_memories(args.user, ids)
            return deleted

        deleted: list[Any] = await _with_store(action)
        audit = AuditEmitter(Publisher(broker, source="mindstream/cli",
                                       topic_prefix=kafka.topic_prefix), "cli")
        actor = Actor(kind=ActorKind.USER, id=_ID_BAD.sub("-", args.actor or _os_user())[:128])
        for memory in deleted:
            await audit.emit(
                "memory.deleted", ("memory", memory.id), actor=actor, before=memory.text,
                details={"user_id": memory.user_id, "topic": memory.topic,
                         "version": memory.version},
                key=f"{memory.id}:{memory.version}:deleted",
            )
        return deleted
    except KafkaError as exc:
        raise CliError(f"deleted, but publishing the audit event failed: {exc}",
                       exit_code=1) from exc
    finally:
        await broker.stop()


def _os_user() -> str:
    try:
        return getpass.getuser() or "cli"
    except (KeyError, OSError):
        return "cli"


def _memories_delete(args: argparse.Namespace) -> int:
    deleted = asyncio.run(_delete(args))
    if not deleted:
        what = "memories" if args.all else f"memory {args.memory_id}"
        raise CliError(f"no {what} found for user {args.user}", exit_code=1)
    for memory in deleted:
        print(f"deleted {memory.id}  {memory.topic}  {memory.text}")
    return 0
