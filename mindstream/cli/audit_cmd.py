"""``mindstream audit verify|tail``: check the hash-chained audit log, read the audit stream.

``verify`` reads MongoDB (``MONGODB_URI``): exit 0 when every chain is
intact, 1 naming the first broken record in one line. ``tail`` reads the
audit topic from Kafka (everything, or the last N), optionally filtered, and
with ``--follow`` keeps printing new events until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from typing import Any, TextIO

from mindstream.cli.errors import CliError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = sub.add_parser("audit", help="verify the audit log, or tail the audit stream")
    audit_sub = audit.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    verify = audit_sub.add_parser("verify", help="check the hash chains (exit 1 if broken)")
    verify.add_argument("--chain", default=None, help="check one chain only (default: all)")
    verify.set_defaults(handler=_verify)
    tail = audit_sub.add_parser("tail", help="print audit events from Kafka, readably")
    tail.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    tail.add_argument("--last", "-n", type=int, default=None, metavar="N",
                      help="only the last N matching events (default: all)")
    tail.add_argument("--action", default=None, help="only this action, e.g. agent.update")
    tail.add_argument("--actor", default=None, help="only this actor id")
    tail.add_argument("--target", default=None, help="only this target id")
    tail.set_defaults(handler=_tail)


def _verify(args: argparse.Namespace) -> int:
    from pymongo.errors import PyMongoError

    try:
        report = asyncio.run(_run_verify(args.chain))
    except PyMongoError as exc:
        raise CliError(f"cannot read the audit log from MongoDB: {exc}") from exc
    if report.first_broken is None:
        print(f"audit log intact: {report.checked} record(s) checked")
        return 0
    print(f"audit log BROKEN: {report.first_broken.line()}")
    return 1


async def _run_verify(chain: str | None) -> Any:
    from services.control_plane.audit_chain import verify
    from shared.mongo import make_client
    from shared.settings import MongoSettings

    settings = MongoSettings()
    client = make_client(settings, app_name="mindstream-cli")
    try:
        return await verify(client[settings.database], chain)
    finally:
        await client.close()


def format_event(event: Any) -> str:
    """One readable line per audit event."""
    when = event.time.strftime("%Y-%m-%d %H:%M:%S")
    line = (f"{when}  {event.outcome.value:<7}  {event.actor.kind.value}:{event.actor.id}  "
            f"{event.action}  {event.target.kind}:{event.target.id}")
    return line + (f"  ({event.reason})" if event.reason else "")


def matcher(action: str | None, actor: str | None, target: str | None) -> Callable[[Any], bool]:
    def matches(event: Any) -> bool:
        return ((action is None or event.action == action)
                and (actor is None or event.actor.id == actor)
                and (target is None or event.target.id == target))
    return matches


def _tail(args: argparse.Namespace) -> int:
    from aiokafka.errors import KafkaError

    from shared.settings import KafkaSettings

    if args.last is not None and args.last < 1:
        raise CliError("--last must be at least 1")
    settings = KafkaSettings()
    try:
        asyncio.run(tail(settings, sys.stdout, follow=args.follow, last=args.last,
                         matches=matcher(args.action, args.actor, args.target)))
    except (KafkaError, OSError) as exc:
        raise CliError(f"cannot read the audit topic from Kafka at {settings.bootstrap_servers}: "
                       f"{exc}") from exc
    return 0


async def tail(settings: Any, out: TextIO, *, follow: bool, last: int | None,
               matches: Callable[[Any], bool], stop: asyncio.Event | None = None) -> int:
    """Print what is on the topic now (sorted by time), then new events if ``follow``."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from schemas.audit import AuditEvent
    from schemas.codec import decode
    from schemas.envelope import Envelope
    from schemas.errors import ContractError
    from schemas.topics import AUDIT

    def parse(record: Any) -> AuditEvent | None:
        try:
            return decode(AuditEvent, record.value or b"", Envelope.from_headers(record.headers))
        except ContractError:
            return None

    topic = AUDIT.physical(settings.topic_prefix)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=None,
                                enable_auto_commit=False)
    await consumer.start()
    printed = 0
    try:
        await consumer._client.force_metadata_update()  # aiokafka has no public call
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not tps:
            raise CliError(f"topic {topic} does not exist (run `mindstream topics apply`)")
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        backlog: list[AuditEvent] = []
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                backlog += [e for r in records if (e := parse(r)) is not None and matches(e)]
        backlog.sort(key=lambda e: e.time)
        for event in backlog[-last:] if last else backlog:
            out.write(format_event(event) + "\n")
            printed += 1
        out.flush()
        while follow and not (stop and stop.is_set()):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for fresh in (parse(r) for r in records):
                    if fresh is not None and matches(fresh):
                        out.write(format_event(fresh) + "\n")
                        printed += 1
            out.flush()
    finally:
        await consumer.stop()
    return printed
