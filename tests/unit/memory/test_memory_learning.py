from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from services.memory.learning import (
    Fact,
    Memory,
    ModelExtractor,
    RuleExtractor,
    equivalent,
    merge,
    normalize_topic,
    rank_memories,
)
from services.memory.model_client import ChatModel

pytestmark = pytest.mark.unit

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I'm vegetarian.", [("diet", "User is vegetarian")]),
        ("I am a vegan", [("diet", "User is vegan")]),
        ("I eat fish now.", [("diet", "User is pescatarian (eats fish, no meat)")]),
        ("I don't eat meat", [("diet", "User is vegetarian")]),
        ("My name is Ana Lopez.", [("name", "User's name is Ana Lopez")]),
        ("Call me Bob, please.", [("name", "User wants to be called Bob")]),
        ("I live in Lisbon.", [("location", "User lives in Lisbon")]),
        ("I moved to Berlin last year", [("location", "User lives in Berlin")]),
        ("I prefer short answers", [("preference:short answers", "User prefers short answers")]),
        ("I really love hiking!", [("preference:hiking", "User loves hiking")]),
        ("I hate cilantro", [("preference:cilantro", "User hates cilantro")]),
        ("I don't like spicy food", [("preference:spicy food", "User dislikes spicy food")]),
        ("I love my dog", [("preference:dog", "User loves their dog")]),
        ("I work as a nurse at night", [("occupation", "User works as a nurse")]),
        ("I work at Acme Corp", [("employer", "User works at Acme Corp")]),
        ("I'm a software engineer", [("occupation", "User is a software engineer")]),
        ("I'm 34 years old", [("age", "User is 34 years old")]),
        (
            "I'm allergic to peanuts and shellfish",
            [
                ("allergy:peanuts", "User is allergic to peanuts"),
                ("allergy:shellfish", "User is allergic to shellfish"),
            ],
        ),
        ("I have a peanut allergy", [("allergy:peanut", "User is allergic to peanut")]),
        (
            "From now on, answer in French.",
            [("preference:language", "User wants replies in French")],
        ),
        ("From now on keep answers brief", [("instruction", "From now on: keep answers brief")]),
        ("From now on, call me Sam", [("name", "User wants to be called Sam")]),
        ("I\u2019m originally from Rome", [("hometown", "User is from Rome")]),
        ("I'm Ana.", [("name", "User's name is Ana")]),
        (
            "Hi! My name is Ana and I live in Porto; I also hate olives.",
            [
                ("name", "User's name is Ana"),
                ("location", "User lives in Porto"),
                ("preference:olives", "User hates olives"),
            ],
        ),
    ],
)
async def test_rule_extractor_phrasings(text: str, expected: list[tuple[str, str]]) -> None:
    facts = await RuleExtractor().extract(text, "")
    assert [(f.topic, f.text) for f in facts] == expected
    assert all(0.5 <= f.confidence <= 1.0 for f in facts)


@pytest.mark.parametrize(
    "text",
    [
        "Do you think I'm vegetarian?",
        "If I lived in Paris I would eat more bread.",
        "I'm tired",
        "I like it",
        "I'm looking for a recipe",
        "My brother is vegan.",
        "",
    ],
)
def test_rule_extractor_ignores_non_facts(text: str) -> None:
    assert RuleExtractor().extract_sync(text) == []


def fact(topic: str, text: str, confidence: float = 0.9) -> Fact:
    return Fact(topic=topic, text=text, confidence=confidence)


def apply(existing: list[Memory], facts: list[Fact], run_id: str, now: datetime) -> list[Memory]:
    """What a store would hold after applying the plan."""
    plan = merge(existing, facts, user_id="u1", run_id=run_id, now=now)
    by_id = {m.id: m for m in existing}
    for update in plan.updates:
        assert by_id[update.previous.id].version == update.previous.version
        by_id[update.current.id] = update.current
    for memory in plan.adds:
        assert memory.id not in by_id
        by_id[memory.id] = memory
    return list(by_id.values())


async def test_vegetarian_then_fish_updates_in_place_with_history() -> None:
    rules = RuleExtractor()
    memories = apply([], await rules.extract("I'm vegetarian.", ""), "run-1", NOW)
    later = NOW + timedelta(days=3)
    plan = merge(
        memories,
        await rules.extract("I eat fish now.", ""),
        user_id="u1",
        run_id="run-2",
        now=later,
    )
    assert plan.adds == []
    [update] = plan.updates
    assert update.previous.text == "User is vegetarian"
    current = update.current
    assert current.id == update.previous.id
    assert current.text == "User is pescatarian (eats fish, no meat)"
    assert current.version == 2
    assert current.source_run_id == "run-2"
    assert current.updated_at == later
    assert current.created_at == NOW
    [revision] = current.history
    assert (revision.text, revision.source_run_id, revision.replaced_by_run_id) == (
        "User is vegetarian",
        "run-1",
        "run-2",
    )
    assert revision.valid_from == NOW
    assert revision.replaced_at == later


def test_equivalent_text_is_not_stored_twice() -> None:
    memories = apply([], [fact("location", "User lives in Lisbon")], "r1", NOW)
    plan = merge(
        memories,
        [fact("Location", "  user LIVES in   lisbon. ")],
        user_id="u1",
        run_id="r2",
        now=NOW,
    )
    assert not plan.changed
    assert [m.id for m in plan.unchanged] == [memories[0].id]


def test_duplicates_within_one_batch_and_replays_are_no_ops() -> None:
    facts = [fact("diet", "User is vegan"), fact("diet", "User is vegan")]
    plan = merge([], facts, user_id="u1", run_id="r1", now=NOW)
    assert len(plan.adds) == 1
    memories = apply([], facts, "r1", NOW)
    replay = merge(memories, facts, user_id="u1", run_id="r1", now=NOW)
    assert not replay.changed


def test_multi_valued_topics_add_distinct_values() -> None:
    memories = apply(
        [],
        [
            fact("allergy:peanuts", "User is allergic to peanuts"),
            fact("preference:tea", "User likes tea"),
        ],
        "r1",
        NOW,
    )
    plan = merge(
        memories,
        [
            fact("allergy:shellfish", "User is allergic to shellfish"),
            fact("preference:jazz", "User loves jazz"),
            fact("preference:tea", "User likes tea"),
        ],
        user_id="u1",
        run_id="r2",
        now=NOW,
    )
    assert sorted(m.topic for m in plan.adds) == ["allergy:shellfish", "preference:jazz"]
    assert [m.topic for m in plan.unchanged] == ["preference:tea"]
    changed = merge(
        memories, [fact("preference:tea", "User hates tea")], user_id="u1", run_id="r3", now=NOW
    )
    assert [u.current.text for u in changed.updates] == ["User hates tea"]


def test_bare_multi_valued_topic_adds_each_distinct_text() -> None:
    memories = apply([], [fact("instruction", "From now on: be brief")], "r1", NOW)
    plan = merge(
        memories,
        [
            fact("instruction", "From now on: be brief."),
            fact("instruction", "From now on: use metric units"),
        ],
        user_id="u1",
        run_id="r2",
        now=NOW,
    )
    assert [m.text for m in plan.adds] == ["From now on: use metric units"]
    assert len(plan.unchanged) == 1
    assert plan.updates == []


def test_low_confidence_facts_are_ignored_and_other_users_rejected() -> None:
    plan = merge([], [fact("diet", "User is vegan", 0.2)], user_id="u1", run_id="r", now=NOW)
    assert not plan.changed
    other = apply([], [fact("diet", "User is vegan")], "r", NOW)[0].model_copy(
        update={"user_id": "u2"}
    )
    with pytest.raises(ValueError, match="another user"):
        merge([other], [], user_id="u1", run_id="r", now=NOW)


def test_memory_ids_are_deterministic() -> None:
    a = merge([], [fact("diet", "User is vegan")], user_id="u1", run_id="r1", now=NOW)
    b = merge([], [fact("diet", "User is vegetarian")], user_id="u1", run_id="r9", now=NOW)
    c = merge([], [fact("diet", "User is vegan")], user_id="u2", run_id="r1", now=NOW)
    assert a.adds[0].id == b.adds[0].id != c.adds[0].id


def test_fact_validation() -> None:
    assert normalize_topic(" Preference : Dark  Chocolate") == "preference:dark chocolate"
    assert normalize_topic("Home Town") == "home_town"
    for bad in ["", "1abc", "a:b:c"]:
        with pytest.raises(ValueError, match="invalid topic"):
            normalize_topic(bad)
    with pytest.raises(ValidationError):
        Fact(topic="diet", text="   ")
    with pytest.raises(ValidationError):
        Fact(topic="diet", text="x", confidence=1.5)
    assert equivalent("User is  Vegan.", "user is vegan")


def memory(
    topic: str,
    text: str,
    *,
    age_days: float = 0,
    expires_in: float | None = None,
    mid: str | None = None,
) -> Memory:
    updated = NOW - timedelta(days=age_days)
    return Memory(
        id=mid or f"{topic}:{text}",
        user_id="u1",
        topic=topic,
        text=text,
        created_at=updated,
        updated_at=updated,
        expires_at=None if expires_in is None else NOW + timedelta(days=expires_in),
    )


def test_rank_memories_by_overlap_recency_and_expiry() -> None:
    memories = [
        memory("preference:jazz", "User loves jazz music", age_days=1),
        memory("location", "User lives in Lisbon", age_days=200),
        memory("location_trip", "User is visiting Lisbon this week", expires_in=-1),
        memory("employer", "User works at Acme", age_days=1),
        memory("diet", "User is vegetarian", age_days=400),
        memory("preference:concerts", "User likes jazz concerts in Lisbon", age_days=300),
    ]
    ranked = rank_memories(memories, "any jazz concerts in Lisbon tonight?", NOW, limit=10)
    texts = [m.text for m in ranked]
    assert texts[0] == "User likes jazz concerts in Lisbon"
    assert "User is visiting Lisbon this week" not in texts  # expired
    assert "User works at Acme" not in texts  # no overlap, not always relevant
    assert "User is vegetarian" in texts  # always relevant
    assert len(rank_memories(memories, "jazz", NOW, limit=1)) == 1
    assert rank_memories(memories, "jazz", NOW, limit=0) == []


def test_recency_breaks_equal_overlap_and_naive_datetimes_work() -> None:
    old = memory("preference:tea", "User likes green tea", age_days=100, mid="old")
    new = memory("preference:tea2", "User likes black tea", age_days=1, mid="new")
    naive_now = NOW.replace(tzinfo=None)
    assert [m.id for m in rank_memories([old, new], "tea", naive_now)] == ["new", "old"]


def test_expired_memory_is_revived_by_restating_it() -> None:
    stale = memory("location", "User lives in Lisbon", expires_in=-1, mid="loc")
    plan = merge(
        [stale], [fact("location", "User lives in Lisbon")], user_id="u1", run_id="r2", now=NOW
    )
    [update] = plan.updates
    assert update.current.expires_at is None
    assert not update.current.expired(NOW)


async def test_model_extractor_parses_json(fake_openai: Any) -> None:
    reply = json.dumps(
        {
            "facts": [
                {"topic": "Diet", "text": "User is pescatarian", "confidence": 0.9},
                {"topic": "bad topic!!", "text": "x", "confidence": 0.9},
                {"topic": "name", "text": "User's name is Ana", "confidence": "high"},
            ]
        }
    )
    client = fake_openai([f"```json\n{reply}\n```"])
    facts = await ModelExtractor(ChatModel(client, "m", timeout=3)).extract(
        "I eat fish now", "Noted!"
    )
    assert [(f.topic, f.text) for f in facts] == [("diet", "User is pescatarian")]
    [call] = client.chat_calls
    assert call["response_format"] == {"type": "json_object"}
    assert call["timeout"] == 3
    assert "USER: I eat fish now" in call["messages"][1]["content"]


@pytest.mark.parametrize(
    "reply", ["not json at all", '{"memories": []}', "[1, 2", RuntimeError("boom")]
)
async def test_model_extractor_falls_back_to_rules(fake_openai: Any, reply: Any) -> None:
    failures: list[BaseException] = []
    extractor = ModelExtractor(
        ChatModel(fake_openai([reply]), "m"), json_mode=False, on_fallback=failures.append
    )
    facts = await extractor.extract("I'm vegetarian and I live in Oslo", "")
    assert [f.topic for f in facts] == ["diet", "location"]
    assert len(failures) == 1
