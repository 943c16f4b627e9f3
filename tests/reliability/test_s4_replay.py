"""Scenario 4: duplicate delivery must change nothing.

Two kinds of replay, after a round of ordinary traffic:

* a second tools service in a *fresh consumer group* (``MINDSTREAM_TOOLS_CONSUMER_GROUP``)
  reads ``tools.calls`` from the beginning: the call ledger must answer every call
  from what it stored, running nothing again;
* every record of every consumed topic is published again verbatim (same key,
  headers and body, so the same message ids), to the same partition.

Afterwards the set of message ids on every topic, the documents of every
collection and the side-effect counter must be what they were before.
"""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer

from schemas.topics import (
    AUDIT,
    KNOWLEDGE_QUERIES,
    RUNS_COMMANDS,
    RUNS_COMPLETED,
    RUNS_EVENTS,
    RUNS_READY,
    RUNS_REQUESTED,
    TOOLS_CALLS,
    TOOLS_RESULTS,
    TOPICS,
)
from tests.reliability.checker import Checker
from tests.reliability.harness import Harness
from tests.reliability.kafka_io import Rec, read_topic
from tests.reliability.side_effect_tools import read_effects

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(600)]

REPLAYED = (RUNS_REQUESTED, RUNS_READY, TOOLS_CALLS, TOOLS_RESULTS, KNOWLEDGE_QUERIES,
            RUNS_COMPLETED, RUNS_EVENTS, RUNS_COMMANDS, AUDIT)
# Written by a timer (per-minute rollups), not by messages: they may grow on their own.
TIME_DRIVEN = {"metrics_rollups"}


async def _ids(checker: Checker, topics: list[str]) -> dict[str, set[str]]:
    return {t: {r.id for r in await read_topic(checker.bootstrap, t) if r.id} for t in topics}


async def _documents(checker: Checker) -> dict[str, int]:
    names = await checker.db.list_collection_names()
    return {n: await checker.db[n].count_documents({}) for n in sorted(names)
            if n not in TIME_DRIVEN}


async def _republish(bootstrap: str, records: list[Rec]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                                linger_ms=5)
    await producer.start()
    try:
        sends = [await producer.send(r.topic, r.value, key=r.key, partition=r.partition,
                                     headers=[(k, v.encode()) for k, v in r.headers.items()])
                 for r in records]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()


async def test_replaying_topics_changes_nothing(harness: Harness) -> None:
    run = await harness.begin("4-duplicate-delivery")
    stack, checker, d = harness.stack, harness.checker, run.driver
    await asyncio.gather(*(d.ordered(f"s4-o{i}", "plain", ["echo"] * 3) for i in range(4)),
                         *(d.sequential(f"s4-t{i}", "tooly", ["bump"] * 2) for i in range(4)))
    await checker.wait_idle()
    topics = [checker.topic(s.name) for s in TOPICS] + [harness.client.reply_topic]
    ids_before = await _ids(checker, topics)
    docs_before = await _documents(checker)
    effects_before = read_effects(stack.effects_path)

    # A fresh consumer group of the tools service reads every call again.
    results_topic = checker.topic(TOOLS_RESULTS.name)
    answered_before = len(await read_topic(checker.bootstrap, results_topic))
    group = f"{stack.spec.prefix}replay-tools"
    stack.add("tools", "tools-replay", {"MINDSTREAM_TOOLS_CONSUMER_GROUP": group})
    await stack.wait_ready(["tools-replay"])
    await checker.wait_idle(extra_groups={TOOLS_CALLS.name: [group]})
    await stack.remove("tools-replay")
    calls = len(ids_before[checker.topic(TOOLS_CALLS.name)])
    reanswered = len(await read_topic(checker.bootstrap, results_topic)) - answered_before
    run.expect(reanswered >= calls, f"the fresh tools group answered {reanswered} of {calls} calls")

    # Every consumed topic again, verbatim.
    records = [r for spec in REPLAYED
               for r in await read_topic(checker.bootstrap, checker.topic(spec.name))]
    await _republish(checker.bootstrap, records)
    await checker.wait_idle(300)

    ids_after = await _ids(checker, topics)
    new_ids = {t.removeprefix(stack.spec.prefix): len(ids_after[t] - ids_before[t])
               for t in topics if ids_after[t] - ids_before[t]}
    docs_after = await _documents(checker)
    changed = {n: (docs_before.get(n, 0), c) for n, c in docs_after.items()
               if docs_before.get(n, 0) != c}
    effects_after = read_effects(stack.effects_path)
    run.figures.update({"records_replayed": len(records), "new_message_ids": new_ids,
                        "calls_reanswered_by_fresh_group": reanswered,
                        "collections_changed": changed,
                        "side_effects_added": sum(effects_after.values())
                        - sum(effects_before.values())})
    run.expect(not new_ids, f"replay produced new message ids: {new_ids}")
    run.expect(not changed, f"replay changed stored documents (before, after): {changed}")
    run.expect(effects_after == effects_before, "replay repeated a side effect")
    await run.finish()
