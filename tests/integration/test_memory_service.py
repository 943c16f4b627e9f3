"""The memory service on real Kafka and a real MongoDB-wire server, in process
(harness: :mod:`tests.integration.memory_harness`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest

from schemas.common import ChatRole
from schemas.envelope import Envelope
from schemas.knowledge import KnowledgeDocument, KnowledgeQuery
from schemas.runs import RunCompleted, RunReady
from schemas.tools import ToolResult
from schemas.topics import (
    KNOWLEDGE_DOCUMENTS,
    KNOWLEDGE_QUERIES,
    RUNS_COMPLETED,
)
from services.memory.settings import MemoryServiceSettings
from shared.errors import ConflictError
from shared.kafka.consumer import Delivery
from tests.integration.memory_harness import (
    T0,
    Harness,
    agent_def,
    completed,
    requested,
    rid,
)
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


def memory_texts(ready: RunReady) -> list[str]:
    return [m.text for m in ready.context.memories]


# -- learning over time ----------------------------------------------------------------


async def test_fact_learned_in_one_session_is_served_in_another_of_the_same_user_only(
    make_harness: Callable[..., Awaitable[Harness]],
) -> None:
    h = await make_harness()
    ana, bob = rid("ana"), rid("bob")
    await h.publish(RUNS_COMPLETED, completed(rid("sA"), ana, "Hi! I'm vegetarian, by the way."))
    [learned] = await h.audit.wait_for(lambda e: e.action == "memory.learned")
    assert learned.details["user_id"] == ana and learned.details["topic"] == "diet"

    ready_ana = await h.ready_for(requested(rid("sB"), ana, "Suggest a dinner recipe"))
    ready_bob = await h.ready_for(requested(rid("sC"), bob, "Suggest a dinner recipe"))
    assert memory_texts(ready_ana) == ["User is vegetarian"]
    assert ready_ana.context.memories[0].topic == "diet"
    assert ready_bob.context.memories == []
    assert ready_ana.context.token_estimate > 0

    # A correction updates the memory in place; it does not add a second one.
    await h.publish(RUNS_COMPLETED, completed(rid("sD"), ana, "Actually I eat fish now.",
                                              at=T0 + timedelta(days=1)))
    [updated] = await h.audit.wait_for(lambda e: e.action == "memory.updated")
    assert updated.target.id == learned.target.id
    assert updated.before_digest == learned.after_digest
    stored = await h.app.store.memories_of(ana)
    assert [(m.topic, m.text) for m in stored] == [
        ("diet", "User is pescatarian (eats fish, no meat)")]
    assert stored[0].history[0].text == "User is vegetarian"
    ready = await h.ready_for(requested(rid("sE"), ana, "What should I cook tonight?"))
    assert memory_texts(ready) == ["User is pescatarian (eats fish, no meat)"]


async def test_redelivered_completion_learns_and_records_once(
    make_harness: Callable[..., Awaitable[Harness]],
) -> None:
    h = await make_harness()
    user, session = rid("u"), rid("s")
    done = completed(session, user, "My name is Ana and I live in Lisbon.")
    for _ in range(3):  # fresh envelopes: the ledger cannot drop them, the handler must
        await h.publish(RUNS_COMPLETED, done)
    await h.audit.wait_for(lambda e: e.action == "memory.learned", count=2)

    async def handled_all() -> bool:
        ledger = h.app.runtime.db["processed_messages"]
        return await ledger.count_documents({"topic": RUNS_COMPLETED.name}) >= 3

    await eventually(handled_all, what="three deliveries handled")
    history = await h.app.store.history(session)
    assert [m.chat["role"] for m in history] == ["user", "assistant"]
    assert len(await h.app.store.memories_of(user)) == 2
    actions = [e.action for _, e in h.audit.seen]
    assert sorted(actions) == ["memory.learned", "memory.learned"]


# -- a long session --------------------------------------------------------------------


async def test_long_session_keeps_a_summary_and_stays_within_the_token_budget(
    make_harness: Callable[..., Awaitable[Harness]],
) -> None:
    budget = 700
    h = await make_harness(agents=(agent_def("planner", budget=budget, history=20),))
    user, session = rid("u"), rid("s")
    runs = [
        completed(session, user,
                  f"Step {i}: we decided to order part {i} from Acme because the deadline is "
                  f"day {i + 30}.", f"Recorded step {i}; part {i} is on the plan.",
                  agent="planner", at=T0 + timedelta(minutes=i), tool=(i % 25 == 0))
        for i in range(200)
    ]
    for done in runs:
        await h.publish(RUNS_COMPLETED, done)
    total = sum(len(d.messages) for d in runs)

    async def all_recorded() -> bool:
        state = await h.app.store.get_session(session)  # one read by _id, not a scan
        return state is not None and state.next_seq == total

    await eventually(all_recorded, timeout_s=90, what=f"{total} messages recorded")
    history = await h.app.store.history(session)
    assert [m.seq for m in history] == list(range(total))
    assert [m.run_id for m in history if m.idx == 0] == [d.run_id for d in runs]
    state = await h.app.store.get_session(session)
    assert state is not None and state.summary and state.summarized_through > total // 2

    ready = await h.ready_for(requested(session, user, "Which part did we order last?",
                                        agent="planner"))
    context = ready.context
    assert context.summary and "Acme" in context.summary
    assert 0 < context.token_estimate <= budget
    assert 0 < len(context.history) <= 20
    assert context.history[-1].content == "Recorded step 199; part 199 is on the plan."
    assert context.history[0].role is not ChatRole.TOOL


# -- concurrent and repeated deliveries ------------------------------------------------


async def test_concurrent_and_redelivered_runs_of_one_session_record_each_turn_once_in_order(
    make_harness: Callable[..., Awaitable[Harness]],
) -> None:
    h = await make_harness()
    user = rid("u")
    for _ in range(3):
        session = rid("s")
        runs = [completed(session, user, f"Question {i}?", f"Answer {i}.", tool=(i == 1),
                          at=T0 + timedelta(seconds=i)) for i in range(3)]

        async def deliver(done: RunCompleted) -> None:
            envelope = Envelope.new(done, source="mindstream/test")
            await h.app.handlers.on_run_completed(
                Delivery(done, envelope, RUNS_COMPLETED.name, 0, 0))

        async def retrying(done: RunCompleted) -> None:  # what the pipeline does on conflict
            for _attempt in range(20):
                with contextlib.suppress(ConflictError):
                    await deliver(done)
                    return
            raise AssertionError("conflict never resolved")

        # Each run delivered twice at once, all runs concurrently (a rebalance overlap).
        await asyncio.gather(*(retrying(d) for d in runs for _ in range(2)))
        await retrying(runs[0])  # and a late redelivery
        history = await h.app.store.history(session)
        assert [m.seq for m in history] == list(range(len(history)))
        assert len(history) == sum(len(d.messages) for d in runs)
        by_run: dict[str, list[int]] = {}
        for m in history:
            by_run.setdefault(m.run_id, []).append(m.idx)
        assert by_run == {
            d.run_id: list(range(len(d.messages))) for d in runs}
        for done in runs:  # each turn contiguous, in its own message order
            seqs = [m.seq for m in history if m.run_id == done.run_id]
            assert seqs == list(range(seqs[0], seqs[0] + len(done.messages)))
            assert [m.chat["role"] for m in history if m.run_id == done.run_id] == [
                m.role.value for m in done.messages]
        state = await h.app.store.get_session(session)
        assert state is not None
        # The cached tail is one versioned document that every concurrent delivery merges
        # into: a turn missing here (history complete) is a lost update of that document.
        assert [m.seq for m in state.tail] == [m.seq for m in history], "cached tail lost a turn"


# -- knowledge ------------------------------------------------------------------------

_SYLLABLES = ["bar", "cel", "dor", "fin", "gal", "hur", "kep", "lom", "mir", "nax"]
_COLOURS = ["saffron", "cobalt", "crimson", "jade", "amber", "violet", "ivory", "scarlet",
            "olive", "silver"]
_EVENTS = ["kite regatta", "lantern parade", "cheese fair", "boat race", "harp contest",
           "wool market"]
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"]


def _town(i: int) -> str:
    return (_SYLLABLES[i % 10] + _SYLLABLES[(i // 10) % 10] + "ia").capitalize()


def _guide(i: int) -> KnowledgeDocument:
    town = _town(i)
    text = (
        f"# {town} travel guide\n\n"
        f"{town} is a small town known for its {_SYLLABLES[(i * 3) % 10]}wood carvings "
        f"and a market held every {['Monday', 'Friday', 'Sunday'][i % 3]}.\n\n"
        f"## When to go\n\nThe best season to visit {town} is {_MONTHS[i % 12]}, during the "
        f"{_COLOURS[i % 10]} {_EVENTS[i // 10]} that fills the harbour.\n\n"
        f"## Getting there\n\nTrains reach {town} from the capital in {i % 7 + 2} hours."
    )
    return KnowledgeDocument(document_id=f"guide-{i}", source=f"guides/{town.lower()}.md",
                             title=f"{town} travel guide", text=text,
                             metadata={"kind": "guide", "region": "north" if i % 2 else "south"})


@pytest.mark.parametrize("embeddings", [False, True], ids=["bm25", "hybrid"])
async def test_knowledge_question_retrieves_the_right_chunk_from_many_documents(
    make_harness: Callable[..., Awaitable[Harness]], embeddings: bool,
) -> None:
    from mindstream.testing.scripted_model import ScriptedModelServer

    async with ScriptedModelServer({"rules": [{"text": "unused"}]}) as model:
        settings = MemoryServiceSettings(
            consumer_concurrency=1,
            embeddings_base_url=model.base_url if embeddings else None,
            embeddings_model="scripted-embed",
        )
        h = await make_harness(settings, agents=(agent_def("guide", knowledge=True),
                                                 agent_def("plain")))
        for i in range(60):
            await h.publish(KNOWLEDGE_DOCUMENTS, _guide(i))

        async def ingested() -> bool:
            return len(await h.app.store.documents()) == 60

        await eventually(ingested, timeout_s=60, what="60 documents ingested")
        target = _town(37)
        query = KnowledgeQuery(call_id=rid("call"), run_id=rid("run"), session_id=rid("s"),
                               agent_id="guide", top_k=3,
                               query=f"When is the {_COLOURS[7]} {_EVENTS[3]} in {target}?")
        await h.publish(KNOWLEDGE_QUERIES, query)
        [result] = await h.results.wait_for(lambda m: m.call_id == query.call_id)
        assert isinstance(result, ToolResult) and result.ok and result.tool == "knowledge_search"
        hits = result.content["hits"]  # type: ignore[index]
        best = hits[0]
        assert best["document_id"] == "guide-37"
        assert "best season to visit " + target + " is " + _MONTHS[37 % 12] in best["text"]
        assert best["title"] == f"{target} travel guide"
        # Ordered by fused rank; scores are cosine (hybrid) or BM25 relative to the best.
        assert all(-1.0 <= hit["score"] <= 1.0 for hit in hits)
        assert best["score"] == 1.0 if not embeddings else best["score"] > 0.3
        if embeddings:
            assert any(r["path"] == "/v1/embeddings" for r in model.requests)

        # Filters on labels; an agent without knowledge is refused.
        south = KnowledgeQuery(call_id=rid("call"), run_id=rid("run"), session_id=rid("s"),
                               agent_id="guide", query=f"visit {target}", filters={"region": "south"})
        refused = KnowledgeQuery(call_id=rid("call"), run_id=rid("run"), session_id=rid("s"),
                                 agent_id="plain", query="anything")
        await h.publish(KNOWLEDGE_QUERIES, south)
        await h.publish(KNOWLEDGE_QUERIES, refused)
        [south_result] = await h.results.wait_for(lambda m: m.call_id == south.call_id)
        assert all(hit["metadata"]["region"] == "south"
                   for hit in south_result.content["hits"])
        [refusal] = await h.results.wait_for(lambda m: m.call_id == refused.call_id)
        assert not refusal.ok and refusal.error.code == "not_allowed"

        # The same question in a run of a knowledge agent puts the chunk in its context.
        ready = await h.ready_for(requested(rid("s"), rid("u"),
                                            f"When is the {_COLOURS[7]} {_EVENTS[3]} in {target}?",
                                            agent="guide"))
        assert ready.context.knowledge and ready.context.knowledge[0].document_id == "guide-37"

        # Re-ingesting: unchanged is a no-op, changed replaces the chunks, deleted removes them.
        kb = h.app.knowledge
        same = await kb.ingest(_guide(5), now=T0)
        assert same.action == "unchanged"
        changed = _guide(5).model_copy(update={"text": _guide(5).text.replace(
            "harbour", "harbour with zeppelins"), "published_at": datetime.now(UTC)})
        assert (await kb.ingest(changed, now=T0)).action == "replaced"
        kites = await kb.search(f"zeppelins in {_town(5)}", top_k=3)
        assert kites[0].document_id == "guide-5"
        assert any("zeppelins" in k.text for k in kites if k.document_id == "guide-5")
        gone = changed.model_copy(update={"deleted": True, "text": "",
                                          "published_at": datetime.now(UTC)})
        assert (await kb.ingest(gone, now=T0)).action == "deleted"
        after = await kb.search(f"zeppelins in {_town(5)}", top_k=5)
        assert all(hit.document_id != "guide-5" for hit in after)
        assert json.dumps([h_.model_dump(mode="json") for h_ in after])  # contract-valid hits


# -- the model path ---------------------------------------------------------------------


async def test_model_writes_summaries_and_extracts_facts_when_configured(
    make_harness: Callable[..., Awaitable[Harness]],
) -> None:
    from mindstream.testing.scripted_model import ScriptedModelServer

    script = {"rules": [
        {"name": "summary", "match": {"system": "running summary"},
         "text": "SUMMARY: the user is planning a garden with raised beds."},
        {"name": "facts", "match": {"system": "extract durable facts"},
         "text": json.dumps({"facts": [{"topic": "preference:gardening",
                                        "text": "User loves gardening", "confidence": 0.9}]})},
    ]}
    async with ScriptedModelServer(script) as model:
        settings = MemoryServiceSettings(consumer_concurrency=1, model_base_url=model.base_url,
                                         model_name="scripted")
        h = await make_harness(settings, agents=(agent_def("gardener", budget=300, history=6),))
        user, session = rid("u"), rid("s")
        for i in range(30):
            await h.publish(RUNS_COMPLETED, completed(
                session, user, f"Bed {i} gets tomatoes and basil this spring.",
                f"Bed {i} planned.", agent="gardener", at=T0 + timedelta(minutes=i)))

        async def summarised() -> bool:
            state = await h.app.store.get_session(session)
            return state is not None and state.next_seq == 60 and bool(state.summary)

        await eventually(summarised, what="30 turns recorded and summarised")
        ready = await h.ready_for(requested(rid("s2"), user, "What about my gardening plans?",
                                            agent="gardener"))
        assert memory_texts(ready) == ["User loves gardening"]
        same = await h.ready_for(requested(session, user, "And bed 30?", agent="gardener"))
        assert same.context.summary and same.context.summary.startswith("SUMMARY:")
        assert same.context.token_estimate <= 300
        paths = {r["path"] for r in model.requests}
        assert paths == {"/v1/chat/completions"}
