"""Learning over time: a preference told in one session is used in another.

What it shows: the user tells the `assistant` "I love spicy food" in a first
session. After that run completes, the memory service extracts the fact and
stores it for the user (not for the session), and says so on the audit topic
(`memory.learned`); this example waits for that event instead of guessing a
delay. A second run, in a new session, asks what to order -- and its context
now carries the learned preference, so the answer uses it.

Run it while mindstream is up (`make demo`, `mindstream demo --keep`, or any
deployment; KAFKA_BOOTSTRAP_SERVERS and MINDSTREAM_TOPIC_PREFIX say where):

    python examples/learning_preferences.py
    python examples/learning_preferences.py --user ada   # memories follow a user id

Exits 0 when memory learned the preference and the second session's answer
mentions it; 1 with a reason otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid

from _common import ExampleFailed, run_example
from aiokafka import AIOKafkaConsumer

from mindstream.client import MindstreamClient
from schemas.audit import AuditEvent
from schemas.codec import decode
from schemas.envelope import Envelope
from schemas.errors import ContractError
from schemas.topics import AUDIT
from shared.settings import KafkaSettings

TELL = "I love spicy food."
ASK = "What food should I order tonight?"


async def wait_for_memory(audit: AIOKafkaConsumer, user: str, timeout: float) -> AuditEvent:
    """The memory service's audit event for a memory it learned (or updated) about ``user``."""
    async with asyncio.timeout(timeout):
        while True:
            for records in (await audit.getmany(timeout_ms=500)).values():
                for record in records:
                    try:
                        event = decode(AuditEvent, record.value, Envelope.from_headers(record.headers))
                    except ContractError:
                        continue
                    if (event.action in ("memory.learned", "memory.updated")
                            and event.details.get("user_id") == user):
                        return event


async def main(user: str, timeout: float) -> None:
    settings = KafkaSettings()
    audit_topic = AUDIT.physical(settings.topic_prefix)
    # Read the audit topic from its end *before* the first run, so the event cannot slip by.
    audit = AIOKafkaConsumer(audit_topic, bootstrap_servers=settings.bootstrap_servers,
                             group_id=None, enable_auto_commit=False, auto_offset_reset="latest")
    await audit.start()
    try:
        if not audit.assignment():
            raise ExampleFailed(f"topic {audit_topic} not found")
        for tp in audit.assignment():
            await audit.position(tp)
        async with MindstreamClient() as client:
            first_session = f"monday-{uuid.uuid4().hex[:6]}"
            print(f"[session {first_session}] {user} > {TELL}")
            first = await client.run("assistant", TELL, session=first_session, user=user,
                                     timeout=timeout)
            print(f"[session {first_session}] assistant > {first.output}")

            try:
                learned = await wait_for_memory(audit, user, timeout=30)
            except TimeoutError:
                raise ExampleFailed(f"memory learned nothing about {user} within 30 s") from None
            print(f"memory: {learned.action} {learned.target.id} "
                  f"(topic {learned.details.get('topic')!r}, from run {learned.details.get('run_id')})")

            second_session = f"friday-{uuid.uuid4().hex[:6]}"
            print(f"[session {second_session}] {user} > {ASK}")
            second = await client.run("assistant", ASK, session=second_session, user=user,
                                      timeout=timeout)
            print(f"[session {second_session}] assistant > {second.output}")
    finally:
        await audit.stop()
    if "spicy" not in (second.output or "").lower():
        raise ExampleFailed("the second session's answer did not use the learned preference")
    print("the new session used what the first one taught")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--user", default=f"example-{uuid.uuid4().hex[:8]}",
                        help="user id; a fresh one by default, so the first run starts knowing nothing")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for each answer")
    args = parser.parse_args()
    sys.exit(run_example("learning_preferences", main(args.user, args.timeout)))
