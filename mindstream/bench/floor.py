"""The floor: what the same hops and round trips cost with nothing of mindstream around them.

A *relay* is the least a Kafka step can be: a plain aiokafka consumer that
reads one record, produces it onward with ``acks=all`` and idempotence (as
the services do), and commits the offset only after the send is acknowledged
(commit after effect). A run of ``hops`` hops passes a record from the
client through ``hops - 1`` relays and back. The MongoDB floor is the same
number of sequential round trips as a run's critical path, in the same mix
of reads, inserts and updates.

Overhead is then reported as a ratio: run latency / (relay + round trips).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pymongo import AsyncMongoClient

from mindstream.bench.stats import Summary, summarize
from shared.tasks import cancel_and_wait

__all__ = ["ANSWER_PATH", "TOOL_PATH", "CriticalPath", "measure_mongo", "measure_relay"]


@dataclass(frozen=True)
class CriticalPath:
    """Sequential Kafka hops and MongoDB round trips between submit and result.

    Counted from the code path of a run (consumer pipeline, memory's context
    assembly, reasoning's persist-publish-commit steps, the tools ledger), on
    the critical path only: work after the reply (memory learning, telemetry,
    audit) is left out. Publishes of one step run back to back, so they count
    as one hop.
    """

    hops: int
    reads: int
    inserts: int
    updates: int

    @property
    def round_trips(self) -> int:
        return self.reads + self.inserts + self.updates

    def as_dict(self) -> dict[str, int]:
        return {"hops": self.hops, "mongo_reads": self.reads, "mongo_inserts": self.inserts,
                "mongo_updates": self.updates, "mongo_round_trips": self.round_trips}


# client -> memory -> reasoning -> client. Round trips a run causes in the handlers on
# its path (a few, like the ledger mark, follow the publish but hold up the partition;
# round trips sent together count once):
# memory: the session run queue (run marker + head hint, read together; the slot insert,
# admitted at once; marker link + head hint, written together; a session's later runs
# add one read, the previous run's slot: the bench sends each run in a new session),
# then the session and memories (reads; it keeps no ledger for requests).
# reasoning on RunReady: ledger seen (read); run insert (no read first), ledger mark
# (inserts); model-call claim (it also clears the published outbox), save after the
# model, outbox clear (updates).
ANSWER_PATH = CriticalPath(hops=3, reads=4, inserts=3, updates=4)
# client -> memory -> reasoning -> tools -> reasoning -> client. As above (queue included), plus tools:
# call ledger start and result (2 inserts); reasoning on the result: ledger seen, run get
# (reads), save, claim (clears), save and clear after the second model call (4 updates),
# ledger mark (insert).
TOOL_PATH = CriticalPath(hops=5, reads=6, inserts=6, updates=8)


async def _make_topics(bootstrap: str, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, 1, 1) for n in names])
    finally:
        await admin.close()


async def _delete_topics(bootstrap: str, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    with contextlib.suppress(Exception):
        await admin.start()
        await admin.delete_topics(names)
    with contextlib.suppress(Exception):
        await admin.close()


async def _relay(bootstrap: str, source: str, target: str, group: str,
                 ready: asyncio.Event, linger_ms: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                                linger_ms=linger_ms)
    consumer = AIOKafkaConsumer(source, bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await producer.start()
    await consumer.start()
    try:
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=100)
        ready.set()
        async for record in consumer:
            await producer.send_and_wait(target, record.value, key=record.key, headers=record.headers)
            await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()


async def measure_relay(bootstrap: str, hops: int, samples: int, *, warmup: int = 5,
                        linger_ms: int = 0, max_s: float = 60.0) -> Summary:
    """Latency (ms) of one record through ``hops`` sequential hops, one record at a time.

    ``linger_ms`` is the producers' batching delay; the bench passes the services' own
    setting, so the floor pays what a service's send pays.
    """
    if hops < 1:
        raise ValueError("a relay needs at least one hop")
    tag = uuid.uuid4().hex[:8]
    names = [f"benchfloor{tag}.hop{i}" for i in range(hops)]
    await _make_topics(bootstrap, names)
    readies = [asyncio.Event() for _ in range(hops - 1)]
    relays = [
        asyncio.create_task(_relay(bootstrap, names[i], names[i + 1], f"benchfloor{tag}.r{i}",
                                   readies[i], linger_ms))
        for i in range(hops - 1)
    ]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                                linger_ms=linger_ms)
    sink = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        await producer.start()
        await sink.start()
        end = TopicPartition(names[-1], 0)
        sink.assign([end])
        await sink.seek_to_end(end)
        await sink.position(end)
        async with asyncio.timeout(60):
            await asyncio.gather(*(r.wait() for r in readies))
        latencies: list[float] = []
        body = b"x" * 512
        began = time.monotonic()
        for i in range(warmup + samples):
            if latencies and time.monotonic() - began > max_s:
                break
            key = f"k{i}".encode()
            started = time.perf_counter()
            await producer.send_and_wait(names[0], body, key=key)
            async with asyncio.timeout(30):
                await sink.getone()
            if i >= warmup:
                latencies.append((time.perf_counter() - started) * 1000)
        return summarize(latencies)
    finally:
        await cancel_and_wait(relays, timeout_s=10.0)
        with contextlib.suppress(Exception):
            await sink.stop()
        with contextlib.suppress(Exception):
            await producer.stop()
        await _delete_topics(bootstrap, names)


async def measure_mongo(uri: str, path: CriticalPath, samples: int, *, warmup: int = 5,
                        max_s: float = 60.0) -> Summary:
    """Latency (ms) of ``path``'s round trips made one after another, on a scratch database."""
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(uri, serverSelectionTimeoutMS=5000)
    db = client[f"benchfloor_{uuid.uuid4().hex[:8]}"]
    coll = db["runs"]
    try:
        await coll.insert_one({"_id": "seed", "version": 1, "state": "x" * 512})
        latencies: list[float] = []
        began = time.monotonic()
        for i in range(warmup + samples):
            if latencies and time.monotonic() - began > max_s:
                break
            started = time.perf_counter()
            for _ in range(path.reads):
                await coll.find_one({"_id": "seed"})
            for j in range(path.inserts):
                await coll.insert_one({"_id": f"d{i}.{j}", "version": 1, "state": "x" * 512})
            for j in range(path.updates):
                await coll.update_one({"_id": f"d{i}.{j % max(path.inserts, 1)}"},
                                      {"$set": {"state": "y" * 512}, "$inc": {"version": 1}})
            if i >= warmup:
                latencies.append((time.perf_counter() - started) * 1000)
        return summarize(latencies)
    finally:
        with contextlib.suppress(Exception):
            await client.drop_database(db.name)
        await client.close()
