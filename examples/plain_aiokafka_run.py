"""Run an agent from any Python with only aiokafka: the wire contract, nothing else.

What it shows: what MindstreamClient does under the hood. A RunRequested is
JSON in the record value, its envelope (CloudEvents attributes, schema
version, correlation id) is in the record headers, and the key is the
session id. The answer is the RunCompleted with the same run_id on
`mindstream.runs.completed.v1`. No mindstream import: port it to any
language's Kafka client. docs/publishing.md shows this file.

Run it while mindstream is up (`make demo`, `mindstream demo --keep`, or any
deployment; KAFKA_BOOTSTRAP_SERVERS and MINDSTREAM_TOPIC_PREFIX say where):

    python examples/plain_aiokafka_run.py
"""

import asyncio
import json
import os
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
PREFIX = os.environ.get("MINDSTREAM_TOPIC_PREFIX", "")  # empty unless the deployment uses one
REQUESTED = PREFIX + "mindstream.runs.requested.v1"
COMPLETED = PREFIX + "mindstream.runs.completed.v1"


async def run_agent(agent: str, text: str, timeout: float = 60.0) -> dict[str, Any]:
    run_id = f"run-{uuid.uuid4().hex}"  # yours to choose: the idempotency key of the run
    session = f"session-{uuid.uuid4().hex[:12]}"
    request = {"run_id": run_id, "agent_id": agent, "session_id": session,
               "user_id": "plain-kafka-user", "input": text}
    headers = [
        ("ce_id", str(uuid.uuid4()).encode()),  # message id; consumers drop repeats of it
        ("ce_type", b"mindstream.runs.requested"),
        ("ce_source", b"examples/plain_aiokafka_run"),
        ("ce_time", datetime.now(UTC).isoformat().encode()),
        ("ce_specversion", b"1.0"),
        ("schema_version", b"1"),
        ("content-type", b"application/json"),
        ("correlation_id", run_id.encode()),
    ]
    # Listen first (every partition, from the end, no consumer group), then ask.
    answers = AIOKafkaConsumer(COMPLETED, bootstrap_servers=BOOTSTRAP, group_id=None,
                               auto_offset_reset="latest", enable_auto_commit=False)
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all", enable_idempotence=True)
    try:
        await answers.start()
        await producer.start()
        if not answers.assignment():
            raise RuntimeError(f"no topic {COMPLETED} at {BOOTSTRAP}")
        for partition in answers.assignment():
            await answers.position(partition)  # pin "the end" before the request goes out
        await producer.send_and_wait(REQUESTED, json.dumps(request).encode(),
                                     key=session.encode(), headers=headers)
        print(f"published {run_id} to {REQUESTED}")
        async with asyncio.timeout(timeout):
            async for record in answers:
                completed: dict[str, Any] = json.loads(record.value)
                if completed.get("run_id") == run_id:
                    envelope = {k: v.decode() for k, v in record.headers}
                    print(f"RunCompleted from {envelope.get('ce_source')} at {envelope.get('ce_time')}")
                    return completed
    finally:
        await producer.stop()
        await answers.stop()
    raise RuntimeError("the consumer stopped before the answer came")


def main() -> int:
    try:
        completed = asyncio.run(run_agent("assistant", "Hello from plain Kafka! Who are you?"))
    except TimeoutError:
        print("no answer in time: is mindstream running, with this topic prefix?", file=sys.stderr)
        return 1
    except (KafkaError, RuntimeError) as exc:  # UnknownTopicOrPartitionError: check the prefix
        print(f"failed: {type(exc).__name__}: {exc} ({REQUESTED}, {COMPLETED} at {BOOTSTRAP})",
              file=sys.stderr)
        return 1
    print(f"{completed['status']}: {completed['output'] or completed['error']}")
    return 0 if completed["status"] == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())
