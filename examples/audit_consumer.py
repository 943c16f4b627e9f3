"""Read the audit trail straight from Kafka, with nothing but aiokafka.

What it shows: every service publishes what it did to `mindstream.audit.v1`
(who, what, to which thing, with what outcome). Any Kafka client can read it:
the body is JSON, and the envelope (id, type, source, time, correlation,
causation, schema version) travels in CloudEvents-style headers. This script
imports no mindstream code at all -- copy it anywhere that has aiokafka.

Run it while mindstream is up (`make demo`, `mindstream demo --keep`, or any
deployment; KAFKA_BOOTSTRAP_SERVERS and MINDSTREAM_TOPIC_PREFIX say where):

    python examples/audit_consumer.py                      # the oldest 20 records
    python examples/audit_consumer.py --follow --max 50    # new records as they happen
    python examples/audit_consumer.py --action memory.     # only actions starting so

It stops after --max records or --timeout seconds, whichever comes first.
Exits 0 when it printed at least one record, 1 with a reason otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

TOPIC = "mindstream.audit.v1"


def decode(record: Any) -> tuple[dict[str, str], dict[str, Any] | None]:
    """Headers as text, and the JSON body (None when the body is not JSON)."""
    headers = {name: value.decode("utf-8", "replace") for name, value in record.headers}
    try:
        body = json.loads(record.value)
    except ValueError:
        return headers, None
    return headers, body if isinstance(body, dict) else None


def describe(headers: dict[str, str], body: dict[str, Any]) -> str:
    """Two readable lines per record: when, who, what, which thing, outcome; the envelope."""
    actor, target = body.get("actor") or {}, body.get("target") or {}
    line = (f"{body.get('time', headers.get('ce_time', '?'))}  "
            f"{actor.get('kind', '?')}:{actor.get('id', '?'):<14} "
            f"{body.get('action', '?'):<22} {target.get('kind', '?')}:{target.get('id', '?')}  "
            f"{body.get('outcome', '?')}")
    if body.get("reason"):
        line += f" ({body['reason']})"
    if body.get("details"):
        line += f"  {json.dumps(body['details'], ensure_ascii=False, sort_keys=True)[:160]}"
    envelope = " ".join(f"{k}={headers[k]}" for k in ("ce_id", "ce_source", "correlation_id")
                        if k in headers)
    return f"{line}\n    {envelope}"


async def topic_exists(bootstrap: str, topic: str) -> bool:
    """Asked first: subscribing to a missing topic waits 40 s for its metadata, then fails."""
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    try:
        await probe.start()
        return topic in await probe.topics()
    finally:
        await probe.stop()


async def read(args: argparse.Namespace) -> int:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    topic = os.environ.get("MINDSTREAM_TOPIC_PREFIX", "") + TOPIC
    if not await topic_exists(bootstrap, topic):
        print(f"audit_consumer: no topic {topic} at {bootstrap}; is mindstream running, "
              "with this MINDSTREAM_TOPIC_PREFIX?", file=sys.stderr)
        return 1
    # No consumer group: this reader gets every partition and commits nothing.
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False,
                                auto_offset_reset="latest" if args.follow else "earliest")
    shown = 0
    try:
        await consumer.start()
        print(f"reading {topic} at {bootstrap} "
              f"({'new records' if args.follow else 'from the oldest retained'})")
        deadline = time.monotonic() + args.timeout
        while shown < args.max and (left := deadline - time.monotonic()) > 0:
            batch = await consumer.getmany(timeout_ms=int(min(left, 1.0) * 1000),
                                           max_records=args.max - shown)
            for records in batch.values():
                for record in records:
                    headers, body = decode(record)
                    if body is None:
                        print(f"(not a JSON object at offset {record.offset}) {record.value[:80]!r}")
                        continue
                    if not str(body.get("action", "")).startswith(args.action):
                        continue
                    print(describe(headers, body), flush=True)
                    shown += 1
    finally:
        await consumer.stop()
    if shown == 0:
        print(f"audit_consumer: no audit record within {args.timeout:.0f} s", file=sys.stderr)
        return 1
    print(f"{shown} record(s)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max", type=int, default=20, help="stop after this many records (20)")
    parser.add_argument("--timeout", type=float, default=10.0, help="stop after this many seconds (10)")
    parser.add_argument("--follow", action="store_true", help="only records published from now on")
    parser.add_argument("--action", default="", help="only actions starting with this, e.g. 'tool.'")
    args = parser.parse_args()
    if args.max < 1 or args.timeout <= 0:
        parser.error("--max must be at least 1 and --timeout above 0")
    try:
        return asyncio.run(read(args))
    except KafkaError as exc:
        print(f"audit_consumer: {type(exc).__name__}: {exc}; is Kafka at "
              f"{os.environ.get('KAFKA_BOOTSTRAP_SERVERS', '127.0.0.1:9092')} running?",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
