"""Scenario 1: kill -9 each service in turn under load and restart it; then every service
gets a second replica and a "node" dies taking one replica of each (the survivors rebalance).
Right before each kill, knowledge documents are published (new, updated, deleted): memory
must end with exactly the last version of each.

Recovery time is measured with probe runs sent right after each kill: the time
until the probe's result arrives covers the restart (or the rebalance) and the
backlog in front of it.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest

from schemas.knowledge import KnowledgeDocument
from schemas.topics import KNOWLEDGE_DOCUMENTS
from tests.reliability.harness import Harness, ScenarioRun
from tests.reliability.stack import CORE_SERVICES

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(600)]

REPLICATED = ("memory", "reasoning", "tools", "telemetry", "control-plane", "workflows")


async def _probe(run: ScenarioRun, tag: str, sessions: int = 1) -> float:
    """Seconds until fresh runs (an echo and a tool call per session) all complete."""
    started = time.monotonic()
    await asyncio.gather(*(
        run.driver.one(f"s1-probe-{tag}-{i}", agent, verb, timeout=120)
        for i in range(sessions) for agent, verb in (("plain", "echo"), ("tooly", "bump"))))
    return round(time.monotonic() - started, 1)


def _text(doc: int, version: int) -> str:
    """A markdown document of several chunks; every version a different text."""
    sections = [f"## Part {p}\n\n" + " ".join(
        f"Fact {p}.{i} of document {doc}, version {version}: the answer is {doc * version + i}."
        for i in range(40)) for p in range(3)]
    return f"# Document {doc} v{version}\n\n" + "\n\n".join(sections)


async def _documents(run: ScenarioRun, round_: int) -> None:
    """Knowledge published right before a kill: a new document, a new version of the
    previous round's, and the one before that deleted. Memory must end with exactly
    the last version of each (the checker compares hashes and chunk ids)."""
    def doc(n: int, version: int, deleted: bool = False) -> KnowledgeDocument:
        return KnowledgeDocument(document_id=f"s1-doc-{n}", source=f"s1/doc-{n}.md",
                                 text="" if deleted else _text(n, version), deleted=deleted,
                                 published_at=datetime.now(UTC))

    batch = [doc(round_, 1)]
    if round_ >= 1:
        batch.append(doc(round_ - 1, 2))
    if round_ >= 2:
        batch.append(doc(round_ - 2, 0, deleted=True))
    await run.harness.stack.publish(KNOWLEDGE_DOCUMENTS, batch)
    run.log.documents.update({d.document_id: d for d in batch})


async def test_kill_9_each_service_then_lose_one_of_two_replicas(harness: Harness) -> None:
    run = await harness.begin("1-kill-9-and-rebalance")
    stack, completions, d = harness.stack, harness.completions, run.driver
    stop = asyncio.Event()

    # No workflow load here yet: in one of six runs two workflow runs never ended (see
    # CHANGELOG, Known issues). The workflows service is still killed in turn and replicated.
    async def work(n: int) -> None:
        if n % 2:
            await d.sequential(f"s1-t{n}", "tooly", ["bump", "bump"])
        else:
            await d.ordered(f"s1-o{n}", "plain", ["echo"] * 3)

    load = asyncio.create_task(d.until(stop, work, workers=4))
    kills: dict[str, dict[str, float]] = {}
    try:
        for round_, name in enumerate(CORE_SERVICES):
            await completions.progressed(4)  # the load is flowing: the kill lands mid-work
            await _documents(run, round_)  # and memory has knowledge to ingest
            (instance,) = stack.of(name)
            stack.kill(instance)
            probe = asyncio.create_task(_probe(run, name))
            ready_s = await stack.restart(instance)
            kills[name] = {"ready_s": round(ready_s, 1), "probe_s": await probe}

        extra = [stack.add(name, f"{name}-b") for name in REPLICATED]
        await stack.wait_ready(extra)
        await completions.progressed(6)
        for name in REPLICATED:  # one "node" goes: the first replica of each
            stack.kill(f"{name}-1")
        kills["one of two replicas each"] = {"probe_s": await _probe(run, "rebalance", 4)}
        await completions.progressed(6)
    finally:
        stop.set()
        await load
    for name in REPLICATED:  # the survivors carry on as the stack's only replicas
        stack.instances.pop(f"{name}-1", None)
    run.figures["kills"] = kills
    run.figures["recover_s"] = max(k["probe_s"] for k in kills.values())
    await run.finish()
