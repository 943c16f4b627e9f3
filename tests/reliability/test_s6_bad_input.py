"""Scenario 6: bad input everywhere; the services keep serving and account for each one.

* Hypothesis-generated malformed records on every consumed topic: each must
  reach the topic's dead-letter topic, with a reason, from *every* consumer
  group that reads the topic (no consumer may skip one silently).
* A record above the broker's size limit is refused at publish, with a reason.
* Valid requests with bad content are refused with a reason: an unknown
  agent, prompt injections against an agent that blocks them (and flagged for
  one that only flags), and an injection arriving in a tool result, which
  must not get the model a tool outside the agent's allowlist.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from schemas.topics import AUDIT, RUNS_EVENTS, topic
from shared.service import consumer_group
from tests.reliability.bad_input import INJECTIONS, KINDS, generate, valid_samples
from tests.reliability.harness import Harness
from tests.reliability.kafka_io import Rec, consumer_groups, read_topic

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(600)]


def _dlq_groups(prefix: str, name: str) -> set[str]:
    """The group each consumer of ``name`` names in its dead letters."""
    return {consumer_group(g.removeprefix("(no group) "), topic(name), prefix)
            if g.startswith("(no group) ") else g
            for g in consumer_groups(prefix).get(name, ())}


async def test_bad_input_is_dead_lettered_or_refused_with_a_reason(harness: Harness) -> None:
    run = await harness.begin("6-bad-input")
    prefix, d, checker = harness.stack.spec.prefix, run.driver, harness.checker
    consumed = sorted(t for t in consumer_groups(prefix) if t in valid_samples())
    bad = generate([topic(t) for t in consumed], per_kind=2)

    producer = AIOKafkaProducer(bootstrap_servers=checker.bootstrap, acks="all",
                                max_request_size=4 << 20)
    await producer.start()
    try:
        sent: dict[str, str] = {}  # key -> logical topic
        for n, record in enumerate(bad):
            key = f"bad-{n}-{uuid.uuid4().hex[:6]}"
            sent[key] = record.topic
            await producer.send_and_wait(prefix + record.topic, record.body, key=key.encode(),
                                         headers=record.headers)
        # Above the broker's message.max.bytes: the broker itself refuses it.
        too_big = valid_samples()["mindstream.runs.requested.v1"]
        try:
            await producer.send_and_wait(prefix + "mindstream.runs.requested.v1",
                                         b" " * (2 << 20) + too_big.model_dump_json().encode(),
                                         key=b"bad-too-big")
            refusal = None
        except KafkaError as exc:
            refusal = f"{type(exc).__name__}: {exc}"
    finally:
        await producer.stop()
    run.expect(refusal is not None, "a 2 MiB record was accepted by the broker")

    # Valid requests with bad content, sent while the barrage is being consumed.
    await asyncio.gather(
        d.sequential("s6-unknown", "nobody-knows-me", ["echo"]),
        *(d.one(f"s6-guard-{i}", "guarded", f"{text}\n" * 1) for i, text in enumerate(INJECTIONS)),
        *(d.one(f"s6-flag-{i}", "plain", text) for i, text in enumerate(INJECTIONS[:3])),
        *(d.sequential(f"s6-poison-{i}", "injected", ["inject"]) for i in range(2)),
    )
    # Still serving: ordinary work goes through after all of it.
    await asyncio.gather(d.ordered("s6-after", "plain", ["echo"] * 3),
                         d.sequential("s6-after-tool", "tooly", ["bump"]))

    verdict = await run.finish(dlq_expected=lambda r: (r.key or b"").startswith(b"bad-"))

    dlq: list[Rec] = []
    for name in consumed:
        dlq += await read_topic(checker.bootstrap, f"{prefix}{name}.dlq", run.dlq_since)
    groups_by_key: dict[str, set[str]] = defaultdict(set)
    for rec in dlq:
        key = (rec.key or b"").decode()
        if rec.headers.get("dlq_reason"):
            groups_by_key[key].add(rec.headers.get("dlq_consumer_group", "?"))
    unaccounted = {k: sorted(_dlq_groups(prefix, t) - groups_by_key.get(k, set()))
                   for k, t in sent.items()
                   if _dlq_groups(prefix, t) - groups_by_key.get(k, set())}
    figures = {"bad_records": len(bad), "bad_kinds": len(KINDS), "topics": len(consumed),
               "unaccounted_bad_records": len(unaccounted), "oversized_refused": refusal}
    problems = [f"{len(unaccounted)} bad records not dead-lettered (with a reason) by every "
                f"consumer of their topic, e.g. {list(unaccounted.items())[:3]}"] if unaccounted else []
    problems += await _refusals(harness, run.log.sent)
    verdict.figures.update(figures)
    verdict.figures["violations"] += problems
    verdict.figures["passed"] = verdict.figures["passed"] and not problems
    harness.results.record(run.name, verdict.figures)
    assert not problems, "\n".join(problems)


async def _refusals(harness: Harness, sent: list) -> list[str]:  # type: ignore[type-arg]
    """Each valid-but-bad request was refused with a reason, or flagged, as promised."""
    problems = []
    checker = harness.checker
    events = await read_topic(checker.bootstrap, checker.topic(RUNS_EVENTS.name))
    flagged = {r.body().get("run_id") for r in events if r.body().get("kind") == "guardrail.triggered"}
    audit = await read_topic(checker.bootstrap, checker.topic(AUDIT.name))
    refused_tools = {(r.body().get("details", {}).get("run_id"), r.body().get("details", {}).get("tool"))
                     for r in audit
                     if r.body().get("action") == "tool.requested" and r.body().get("outcome") == "refused"}
    for s in sent:
        done = harness.completions.result(s.run_id)
        if done is None:
            continue  # the checker already reported it
        if s.session_id == "s6-unknown" and not (done.status.value == "failed" and done.error
                                                 and "unknown agent" in done.error):
            problems.append(f"unknown agent: {done.status.value} {done.error!r}")
        if s.session_id.startswith("s6-guard") and not (
                done.status.value == "failed" and "guardrail" in (done.error or "")):
            problems.append(f"injection {s.text[:40]!r} not refused: {done.status.value}")
        if s.session_id.startswith("s6-flag") and s.run_id not in flagged:
            problems.append(f"injection {s.text[:40]!r} not flagged for a flagging agent")
        if s.session_id.startswith("s6-poison") and (s.run_id, "http_fetch") not in refused_tools:
            problems.append(f"poisoned tool result: http_fetch not refused for {s.run_id}")
    calls = await checker.db.tool_calls.count_documents(
        {"tool": "http_fetch", "run_id": {"$in": [s.run_id for s in sent]}})
    if calls:
        problems.append(f"{calls} http_fetch call(s) reached the tools service from injected runs")
    return problems
