"""Learning durable facts about a user, and remembering them without duplicates.

After a run completes, an :class:`Extractor` turns the user's words into
:class:`Fact` s keyed by a normalised *topic*; :func:`merge` compares them with
what is already stored and plans adds, in-place updates (with history) and
no-ops. :func:`rank_memories` picks the ones worth putting into a later run.

Topics decide identity. A plain topic (``name``, ``diet``, ``location``) holds
one value: a new, different text replaces the old one and the old one goes to
``history`` ("I'm vegetarian" then "I eat fish now" is one ``diet`` memory,
updated). A keyed topic (``preference:coffee``, ``allergy:peanuts``) is one
value per key, so distinct preferences add up while "I like coffee" then
"I hate coffee" updates. A bare multi-valued topic (``instruction``,
``preference`` without a key) adds every distinct text.

Memory ids derive from user, topic (and text for bare multi-valued topics), so
replaying the same completed run yields the same ids and changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from services.memory.model_client import ChatModel
from services.memory.text import tokenize

__all__ = [
    "ALWAYS_RELEVANT",
    "MULTI_VALUED",
    "Extractor",
    "Fact",
    "Memory",
    "MemoryRevision",
    "MemoryUpdate",
    "MergePlan",
    "ModelExtractor",
    "RuleExtractor",
    "equivalent",
    "memory_id",
    "merge",
    "normalize_topic",
    "parse_facts",
    "rank_memories",
]

log = logging.getLogger(__name__)

#: Base topics that hold many values when used without a ``:key``.
MULTI_VALUED = frozenset(
    {"preference", "allergy", "instruction", "food_avoid", "interest", "language", "goal"}
)
#: Base topics that matter to almost any request (how to address the user,
#: what they must not eat, how they want answers), served even without
#: lexical overlap with the query.
ALWAYS_RELEVANT = frozenset({"name", "diet", "allergy", "instruction", "food_avoid"})

_TOPIC = re.compile(r"^[a-z][a-z0-9_]*(?::[^:\s][^:]*)?$")


def normalize_topic(topic: str) -> str:
    """``" Preference : Dark  Chocolate"`` → ``"preference:dark chocolate"``."""
    base, sep, key = topic.strip().lower().partition(":")
    base = re.sub(r"[\s\-]+", "_", base.strip())
    key = " ".join(key.split())
    result = f"{base}:{key}" if sep and key else base
    if not _TOPIC.match(result):
        raise ValueError(f"invalid topic {topic!r}")
    return result


def _base(topic: str) -> str:
    return topic.partition(":")[0]


def _is_bare_multi(topic: str) -> bool:
    return ":" not in topic and topic in MULTI_VALUED


_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'"})


def _norm_text(text: str) -> str:
    text = text.translate(_APOSTROPHES).lower()
    text = re.sub(r"[^\w\s']+", " ", text)
    return " ".join(text.split())


def equivalent(a: str, b: str) -> bool:
    """Same fact text, ignoring case, spacing and punctuation."""
    return _norm_text(a) == _norm_text(b)


class Fact(BaseModel):
    """One durable statement about the user, as an extractor found it."""

    model_config = ConfigDict(frozen=True)

    topic: str
    text: str = Field(min_length=1, max_length=500)
    confidence: float = Field(default=0.8, ge=0.0, le=1.0)
    expires_at: datetime | None = None

    @field_validator("topic")
    @classmethod
    def _topic(cls, value: str) -> str:
        return normalize_topic(value)

    @field_validator("text")
    @classmethod
    def _text(cls, value: str) -> str:
        value = " ".join(value.split())
        if not value:
            raise ValueError("fact text is empty")
        return value


class MemoryRevision(BaseModel):
    """A text a memory used to hold, kept when it was replaced."""

    model_config = ConfigDict(frozen=True)

    text: str
    source_run_id: str | None
    valid_from: datetime
    replaced_at: datetime
    replaced_by_run_id: str


class Memory(BaseModel):
    """A stored fact about a user; ``version`` guards concurrent writers."""

    model_config = ConfigDict(frozen=True)

    id: str
    user_id: str
    topic: str
    text: str
    confidence: float = 0.8
    source_run_id: str | None = None
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None = None
    history: tuple[MemoryRevision, ...] = ()
    version: int = 1

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and _aware(self.expires_at) <= _aware(now)


@dataclass(frozen=True)
class MemoryUpdate:
    """An in-place change; store it only where ``version == previous.version``."""

    previous: Memory
    current: Memory


@dataclass(frozen=True)
class MergePlan:
    adds: list[Memory] = field(default_factory=list)
    updates: list[MemoryUpdate] = field(default_factory=list)
    unchanged: list[Memory] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.adds or self.updates)


def _aware(value: datetime) -> datetime:
    """MongoDB hands back naive UTC datetimes unless told otherwise."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def memory_id(user_id: str, topic: str, text: str | None = None) -> str:
    """Deterministic id: one per (user, topic), or per text for bare multi-valued topics."""
    parts = [user_id, topic] + ([_norm_text(text)] if text is not None else [])
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]


def merge(
    existing: Sequence[Memory],
    facts: Iterable[Fact],
    *,
    user_id: str,
    run_id: str,
    now: datetime,
    min_confidence: float = 0.5,
) -> MergePlan:
    """Plan how ``facts`` change ``existing`` memories of ``user_id``.

    Within one batch the last fact for a single-valued topic wins. Expired
    memories are treated as absent, so a re-stated fact revives them as an
    update. Facts below ``min_confidence`` are ignored.
    """
    if not user_id or not run_id:
        raise ValueError("merge needs a user_id and a run_id")
    by_topic: dict[str, Memory] = {}
    multi: dict[str, list[Memory]] = {}
    for memory in existing:
        if memory.user_id != user_id:
            raise ValueError(f"memory {memory.id} belongs to another user")
        if _is_bare_multi(memory.topic):
            multi.setdefault(memory.topic, []).append(memory)
        else:
            by_topic[memory.topic] = memory

    plan = MergePlan()
    for (topic, _), fact in _last_per_key(facts, min_confidence).items():
        if _is_bare_multi(topic):
            same = next((m for m in multi.get(topic, []) if equivalent(m.text, fact.text)), None)
            current = same
        else:
            current = by_topic.get(topic)
        if current is None:
            plan.adds.append(_new_memory(fact, user_id=user_id, run_id=run_id, now=now))
        elif equivalent(current.text, fact.text) and not current.expired(now):
            plan.unchanged.append(current)
        else:
            plan.updates.append(
                MemoryUpdate(previous=current, current=_revise(current, fact, run_id, now))
            )
    return plan


def _last_per_key(
    facts: Iterable[Fact], min_confidence: float
) -> dict[tuple[str, str | None], Fact]:
    """One fact per identity: the batch's last word on a topic wins."""
    latest: dict[tuple[str, str | None], Fact] = {}
    for fact in facts:
        if fact.confidence < min_confidence:
            continue
        key = (fact.topic, _norm_text(fact.text) if _is_bare_multi(fact.topic) else None)
        latest.pop(key, None)
        latest[key] = fact
    return latest


def _new_memory(fact: Fact, *, user_id: str, run_id: str, now: datetime) -> Memory:
    text_key = fact.text if _is_bare_multi(fact.topic) else None
    return Memory(
        id=memory_id(user_id, fact.topic, text_key),
        user_id=user_id,
        topic=fact.topic,
        text=fact.text,
        confidence=fact.confidence,
        source_run_id=run_id,
        created_at=now,
        updated_at=now,
        expires_at=fact.expires_at,
    )


def _revise(current: Memory, fact: Fact, run_id: str, now: datetime) -> Memory:
    revision = MemoryRevision(
        text=current.text,
        source_run_id=current.source_run_id,
        valid_from=current.updated_at,
        replaced_at=now,
        replaced_by_run_id=run_id,
    )
    return current.model_copy(
        update={
            "text": fact.text,
            "confidence": fact.confidence,
            "source_run_id": run_id,
            "updated_at": now,
            "expires_at": fact.expires_at,
            "history": (*current.history, revision),
            "version": current.version + 1,
        }
    )


def rank_memories(
    memories: Iterable[Memory],
    query: str,
    now: datetime,
    limit: int = 8,
    *,
    half_life_days: float = 90.0,
) -> list[Memory]:
    """The most relevant unexpired memories for ``query``, best first.

    Score = share of query terms found in the memory's topic and text, plus up
    to 0.25 for recency (halving every ``half_life_days``), plus 0.5 for
    topics in :data:`ALWAYS_RELEVANT`. A memory with neither overlap nor an
    always-relevant topic is not served: recency alone is not relevance.
    """
    if limit <= 0:
        return []
    query_terms = set(tokenize(query))
    scored: list[tuple[float, datetime, str, Memory]] = []
    for memory in memories:
        if memory.expired(now):
            continue
        terms = set(tokenize(f"{memory.topic.replace(':', ' ')} {memory.text}"))
        overlap = len(query_terms & terms) / len(query_terms) if query_terms else 0.0
        always = _base(memory.topic) in ALWAYS_RELEVANT
        if overlap == 0.0 and not always:
            continue
        age_days = max(0.0, (_aware(now) - _aware(memory.updated_at)).total_seconds() / 86400)
        recency = 0.25 * math.pow(0.5, age_days / half_life_days)
        score = overlap + recency + (0.5 if always else 0.0)
        scored.append((score, _aware(memory.updated_at), memory.id, memory))
    scored.sort(key=lambda s: (-s[0], -s[1].timestamp(), s[2]))
    return [s[3] for s in scored[:limit]]


# --------------------------------------------------------------------------- extractors


class Extractor(Protocol):
    async def extract(self, user_text: str, assistant_text: str) -> list[Fact]: ...


_CLAUSE_SPLIT = re.compile(
    r"(?:\s*[,;]\s*(?:and|but|so|also)?\s*|\s+(?:and|but|so|also)\s+)(?=(?:i|i'm|my)\b)", re.I
)
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?\n])\s+|\n+")
_STOP_TAIL = re.compile(
    r"\s+(?:now|anymore|any more|these days|nowadays|too|as well|a lot|very much|so much|"
    r"really|though|please|again|instead|lately)$",
    re.I,
)
_LEAD = re.compile(r"^(?:the|a|an|my|some|all|to)\s+", re.I)
_PRONOUN_OBJECT = re.compile(r"^(?:it|that|this|these|those|them|you|your|him|her|one)\b", re.I)
_NAME_STOP = frozenset(
    {"and", "but", "please", "from", "now", "instead", "thanks", "thank", "i", "im", "so", "or"}
)
_DIETS = {
    "vegetarian": "User is vegetarian",
    "vegan": "User is vegan",
    "pescatarian": "User is pescatarian (eats fish, no meat)",
    "pescetarian": "User is pescatarian (eats fish, no meat)",
    "flexitarian": "User is flexitarian",
    "omnivore": "User eats everything (omnivore)",
    "keto": "User follows a keto diet",
}
_PROFESSION = re.compile(
    r"(?:er|or|ist|ian|ant|ent|ect|eer|nurse|chef|doctor|cook|pilot|lawyer|student|"
    r"scientist|analyst|designer|consultant|architect|teacher|manager|dentist)$",
    re.I,
)
_LANGUAGES = (
    "english|french|german|spanish|italian|portuguese|dutch|polish|russian|ukrainian|"
    "chinese|mandarin|japanese|korean|arabic|hindi|turkish|swedish|norwegian|danish|"
    "finnish|greek|czech|hebrew|vietnamese|indonesian"
)
_I_AM = r"\bi(?:'m|\s+am)\s+"
_OBJ = r"(?P<x>[^,.;!?]+)"
_LIST_OBJ = r"(?P<x>[^.;!?]+)"


_FIRST_PERSON = (
    (re.compile(r"\bmy\b", re.I), "their"),
    (re.compile(r"\bme\b", re.I), "them"),
    (re.compile(r"\bmyself\b", re.I), "themselves"),
)


def _clean_object(text: str) -> str:
    """Object of a statement, in the third person, without trailing fillers."""
    text = text.strip(" \t\"'“”")
    for pattern, replacement in _FIRST_PERSON:
        text = pattern.sub(replacement, text)
    previous = None
    while previous != text:
        previous = text
        text = _STOP_TAIL.sub("", text).strip()
    return text


def _key(obj: str) -> str:
    obj = re.sub(r"^(?:their|the|a|an|some|all|to)\s+", "", obj.lower()).strip()
    obj = re.split(r"\s+(?:over|rather than|instead of|more than|than|to)\s+", obj)[0]
    words = re.findall(r"[\w'-]+", obj)
    return " ".join(words[:4])


def _name(raw: str) -> str | None:
    words: list[str] = []
    for word in raw.split():
        clean = word.strip("\"'“”,.;:!?")
        if clean.lower().replace("'", "") in _NAME_STOP or not re.match(r"^[\w'-]+$", clean):
            break
        words.append(clean[:1].upper() + clean[1:])
        if len(words) == 3 or word[-1:] in ",.;:!?":
            break
    return " ".join(words) or None


def _split_list(obj: str) -> list[str]:
    parts = re.split(r"\s*(?:,|\band\b|\bor\b|&)\s*", obj)
    return [p for p in (_clean_object(_LEAD.sub("", p.strip())) for p in parts) if p]


@dataclass(frozen=True)
class _Rule:
    pattern: re.Pattern[str]
    build: Callable[[re.Match[str], str], list[Fact]]


def _f(topic: str, text: str, confidence: float = 0.9) -> list[Fact]:
    try:
        return [Fact(topic=topic, text=text, confidence=confidence)]
    except (ValidationError, ValueError):
        return []


def _name_rule(m: re.Match[str], _: str) -> list[Fact]:
    name = _name(m.group("x"))
    return _f("name", f"User's name is {name}") if name else []


def _call_me_rule(m: re.Match[str], _: str) -> list[Fact]:
    name = _name(m.group("x"))
    return _f("name", f"User wants to be called {name}") if name else []


def _diet_rule(m: re.Match[str], _: str) -> list[Fact]:
    return _f("diet", _DIETS[m.group("d").lower()])


def _not_diet_rule(m: re.Match[str], _: str) -> list[Fact]:
    return _f("diet", f"User is no longer {m.group('d').lower()}", 0.8)


def _eats_fish_rule(_m: re.Match[str], _: str) -> list[Fact]:
    return _f("diet", _DIETS["pescatarian"], 0.8)


def _no_meat_rule(_m: re.Match[str], _: str) -> list[Fact]:
    return _f("diet", _DIETS["vegetarian"], 0.8)


def _eats_meat_rule(_m: re.Match[str], _: str) -> list[Fact]:
    return _f("diet", _DIETS["omnivore"], 0.8)


def _avoid_rule(m: re.Match[str], _: str) -> list[Fact]:
    out: list[Fact] = []
    for item in _split_list(m.group("x")):
        out += _f(f"food_avoid:{_key(item)}", f"User doesn't eat {item}", 0.8)
    return out


def _allergy_rule(m: re.Match[str], _: str) -> list[Fact]:
    out: list[Fact] = []
    for item in _split_list(m.group("x")):
        out += _f(f"allergy:{_key(item)}", f"User is allergic to {item}", 0.95)
    return out


def _place(m: re.Match[str]) -> str | None:
    place = _clean_object(m.group("x"))
    place = re.split(
        r"\s+(?:with|since|for|because|where|and|last|this|recently|yesterday|in \d{4}|"
        r"a \w+ ago)\b",
        place,
    )[0]
    return place or None


def _lives_rule(m: re.Match[str], _: str) -> list[Fact]:
    place = _place(m)
    return _f("location", f"User lives in {place}") if place else []


def _from_rule(m: re.Match[str], _: str) -> list[Fact]:
    place = _place(m)
    return _f("hometown", f"User is from {place}", 0.8) if place else []


def _works_as_rule(m: re.Match[str], _: str) -> list[Fact]:
    job = _clean_object(_LEAD.sub("", m.group("x")))
    job = re.split(r"\s+(?:at|for|in|with|since)\s+", job)[0]
    return _f("occupation", f"User works as {_article(job)}") if job else []


def _works_at_rule(m: re.Match[str], _: str) -> list[Fact]:
    org = _clean_object(m.group("x"))
    return _f("employer", f"User works at {org}") if org else []


def _article(noun: str) -> str:
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun


def _i_am_a_rule(m: re.Match[str], _: str) -> list[Fact]:
    noun = _clean_object(m.group("x"))
    if not noun or len(noun.split()) > 3 or not _PROFESSION.search(noun):
        return []
    if noun.split()[-1].lower() in _NOT_JOBS:
        return []
    return _f("occupation", f"User is {_article(noun)}", 0.7)


_NOT_JOBS = frozenset(
    {
        "mother",
        "father",
        "brother",
        "sister",
        "daughter",
        "member",
        "beginner",
        "newcomer",
        "user",
        "customer",
        "owner",
        "parent",
        "fan",
        "lover",
        "reader",
        "winner",
        "believer",
        "smoker",
        "non-smoker",
        "runner",
        "gamer",
        "patient",
        "resident",
        "client",
    }
)


def _age_rule(m: re.Match[str], _: str) -> list[Fact]:
    return _f("age", f"User is {m.group('n')} years old", 0.9)


def _language_rule(m: re.Match[str], _: str) -> list[Fact]:
    return _f("preference:language", f"User wants replies in {m.group('lang').capitalize()}")


_VERBS = {
    "prefer": "prefers",
    "like": "likes",
    "love": "loves",
    "enjoy": "enjoys",
    "adore": "loves",
    "hate": "hates",
    "dislike": "dislikes",
    "detest": "hates",
    "can't stand": "can't stand",
    "cannot stand": "can't stand",
    "don't like": "dislikes",
    "do not like": "dislikes",
    "don't enjoy": "dislikes",
}


def _preference_rule(m: re.Match[str], _: str) -> list[Fact]:
    obj = _clean_object(m.group("x"))
    if not obj or _PRONOUN_OBJECT.match(obj) or len(obj.split()) > 10:
        return []
    key = _key(obj)
    if not key:
        return []
    verb = _VERBS[" ".join(m.group("verb").lower().translate(_APOSTROPHES).split())]
    return _f(f"preference:{key}", f"User {verb} {obj}", 0.85)


def _fan_rule(m: re.Match[str], _: str) -> list[Fact]:
    obj = _clean_object(m.group("x"))
    key = _key(obj)
    return _f(f"preference:{key}", f"User loves {obj}", 0.8) if key else []


def _from_now_on_rule(m: re.Match[str], _: str) -> list[Fact]:
    """A standing instruction, unless it states a fact another rule knows."""
    instruction = m.group("x").strip(" ,:")
    specific = _apply_rules(instruction, _RULES[1:])
    if specific:
        return specific
    lang = re.search(rf"\bin\s+(?P<lang>{_LANGUAGES})\b", instruction, re.I)
    if lang and re.search(r"\b(?:answer|reply|respond|write|talk|speak)", instruction, re.I):
        return _language_rule(lang, instruction)
    if not instruction:
        return []
    return _f("instruction", f"From now on: {instruction}", 0.9)


def _i_am_name_rule(m: re.Match[str], clause: str) -> list[Fact]:
    """'I'm Ana' — only a capitalised word in the original text counts as a name."""
    word = m.group("x")
    start = m.start("x")
    original = clause[start : start + len(word)]
    if not original[:1].isupper() or original.lower() in _NOT_NAMES:
        return []
    return _f("name", f"User's name is {original}", 0.6)


_NOT_NAMES = frozenset(
    {
        "fine",
        "good",
        "ok",
        "okay",
        "sorry",
        "here",
        "back",
        "done",
        "ready",
        "new",
        "happy",
        "sure",
        "tired",
        "hungry",
        "afraid",
        "english",
        "french",
        "german",
        "not",
        "just",
    }
)


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


#: Tried in order; the first rule that yields facts for a clause wins.
_RULES: tuple[_Rule, ...] = (
    _Rule(_rx(r"\bfrom now on\b[,:]?\s*(?P<x>.+)$"), _from_now_on_rule),
    _Rule(_rx(r"\bmy name(?:'s|\s+is)\s+(?P<x>.+)$"), _name_rule),
    _Rule(_rx(r"\b(?:call me|i go by|i(?:'m|\s+am) called)\s+(?P<x>.+)$"), _call_me_rule),
    _Rule(
        _rx(_I_AM + r"(?:also\s+|very\s+|severely\s+)?allergic to\s+" + _LIST_OBJ), _allergy_rule
    ),
    _Rule(_rx(r"\bi have an?\s+(?P<x>[\w\s-]+?)\s+allergy\b"), _allergy_rule),
    _Rule(_rx(_I_AM + r"(?:no longer|not)\s+(?:an?\s+)?(?P<d>vegetarian|vegan)\b"), _not_diet_rule),
    _Rule(
        _rx(
            _I_AM + r"(?:now\s+|also\s+|strictly\s+|fully\s+|a\s+|an\s+)*"
            r"(?P<d>vegetarian|vegan|pescatarian|pescetarian|flexitarian|omnivore|keto)\b"
        ),
        _diet_rule,
    ),
    _Rule(_rx(r"\bi\s+(?:now\s+|also\s+|do\s+)?eat\s+(?:fish|seafood)\b"), _eats_fish_rule),
    _Rule(_rx(r"\bi\s+(?:now\s+)?eat\s+meat\b"), _eats_meat_rule),
    _Rule(
        _rx(
            r"\bi\s+(?:don't|do not|no longer|never|can't|cannot)\s+eat\s+"
            r"(?:any\s+)?(?:meat|animal products)\b"
        ),
        _no_meat_rule,
    ),
    _Rule(
        _rx(r"\bi\s+(?:don't|do not|no longer|never|can't|cannot)\s+eat\s+" + _LIST_OBJ),
        _avoid_rule,
    ),
    _Rule(_rx(r"\bi\s+(?:currently\s+)?(?:live|reside)\s+in\s+" + _OBJ), _lives_rule),
    _Rule(_rx(_I_AM + r"(?:living|based|located)\s+in\s+" + _OBJ), _lives_rule),
    _Rule(_rx(r"\bi(?:'ve|\s+have)?\s+(?:just\s+)?moved\s+to\s+" + _OBJ), _lives_rule),
    _Rule(_rx(_I_AM + r"(?:originally\s+)?from\s+" + _OBJ), _from_rule),
    _Rule(_rx(r"\bi\s+work\s+as\s+" + _OBJ), _works_as_rule),
    _Rule(_rx(r"\bi\s+work\s+(?:at|for)\s+" + _OBJ), _works_at_rule),
    _Rule(_rx(_I_AM + r"(?P<n>\d{1,3})\s*(?:years old|year old|yo|y/o)\b"), _age_rule),
    _Rule(
        _rx(
            rf"\b(?:answer|reply|respond|write|talk|speak)\s+(?:to me\s+)?in\s+"
            rf"(?P<lang>{_LANGUAGES})\b"
        ),
        _language_rule,
    ),
    _Rule(
        _rx(
            r"\bi\s+(?:(?:really|absolutely|generally|usually|much|also|still|just|truly)\s+)*"
            r"(?P<verb>prefer|like|love|enjoy|adore|hate|dislike|detest|can't stand|"
            r"cannot stand|don't like|do not like|don't enjoy)\s+" + _OBJ
        ),
        _preference_rule,
    ),
    _Rule(_rx(_I_AM + r"(?:an?\s+)?(?:big\s+|huge\s+)?fan\s+of\s+" + _OBJ), _fan_rule),
    _Rule(_rx(_I_AM + r"an?\s+" + _OBJ), _i_am_a_rule),
    _Rule(_rx(_I_AM + r"(?P<x>[\w'-]+)$"), _i_am_name_rule),
)


def _apply_rules(clause: str, rules: Sequence[_Rule]) -> list[Fact]:
    for rule in rules:
        match = rule.pattern.search(clause)
        if match is not None:
            found = rule.build(match, clause)
            if found:
                return found
    return []


_HYPOTHETICAL = re.compile(r"^(?:if|what if|suppose|imagine|when)\b|\bwould\b|\bif i\b", re.I)


def _clauses(user_text: str) -> list[str]:
    text = user_text.translate(_APOSTROPHES)
    out: list[str] = []
    for raw in _SENTENCE_SPLIT.split(text):
        sentence = raw.strip()
        if not sentence or sentence.endswith("?") or _HYPOTHETICAL.search(sentence):
            continue
        clauses = _CLAUSE_SPLIT.split(sentence.rstrip(".!"))
        out.extend(c.strip(" ,;") for c in clauses if c.strip(" ,;"))
    return out


@dataclass
class RuleExtractor:
    """Regex rules over the user's own words; questions and hypotheticals skipped.

    Deliberately conservative: a missed fact costs one more mention by the
    user, a wrong fact is served in every later run.
    """

    async def extract(self, user_text: str, assistant_text: str = "") -> list[Fact]:
        return self.extract_sync(user_text)

    def extract_sync(self, user_text: str) -> list[Fact]:
        if not isinstance(user_text, str):
            raise TypeError("user_text must be a string")
        facts: list[Fact] = []
        for clause in _clauses(user_text):
            facts.extend(_apply_rules(clause, _RULES))
        return facts


_EXTRACT_PROMPT = """\
You extract durable facts about the USER from one exchange, for a long-term memory.
Only facts the user states about themselves that will still matter in later
conversations: name, location, hometown, occupation, employer, age, diet,
allergies, preferences, standing instructions. Ignore questions, hypotheticals,
one-off requests and anything about other people.
Answer with JSON only: {"facts": [{"topic": str, "text": str, "confidence": number}]}
topic: one of name, location, hometown, occupation, employer, age, diet,
instruction, or keyed "preference:<thing>", "allergy:<thing>", "food_avoid:<thing>".
text: a short third-person sentence ("User is vegetarian"). confidence: 0..1.
If there are none, answer {"facts": []}."""


_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.I)


def parse_facts(raw: str) -> list[Fact]:
    """Facts from a model's JSON reply; invalid items are dropped one by one.

    Raises ``ValueError`` when the reply is not JSON of the expected shape at
    all, so the caller can fall back to rules.
    """
    text = _FENCE.sub("", raw.strip())
    start, end = text.find("{"), text.rfind("}")
    list_start = text.find("[")
    payload: Any
    try:
        if start != -1 and end > start and (list_start == -1 or start < list_start):
            payload = json.loads(text[start : end + 1])
        else:
            payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"model reply is not JSON: {exc}") from exc
    items = payload.get("facts") if isinstance(payload, dict) else payload
    if not isinstance(items, list):
        raise ValueError("model reply has no 'facts' list")
    facts: list[Fact] = []
    for item in items:
        try:
            facts.append(Fact.model_validate(item))
        except ValidationError as exc:
            log.info("dropping invalid fact from model: %s", exc.errors()[:1])
    return facts


@dataclass
class ModelExtractor:
    """Facts extracted by a chat model in JSON mode; rules when the model fails.

    Falls back to :class:`RuleExtractor` on transport errors and on replies
    that are not JSON of the expected shape, telling ``on_fallback``.
    """

    model: ChatModel
    fallback: RuleExtractor = field(default_factory=RuleExtractor)
    json_mode: bool = True
    max_input_chars: int = 6000
    on_fallback: Callable[[BaseException], None] | None = None

    async def extract(self, user_text: str, assistant_text: str = "") -> list[Fact]:
        exchange = (
            f"USER: {user_text[: self.max_input_chars]}\n\n"
            f"ASSISTANT: {assistant_text[: self.max_input_chars // 2]}"
        )
        try:
            raw = await self.model.complete(
                [
                    {"role": "system", "content": _EXTRACT_PROMPT},
                    {"role": "user", "content": exchange},
                ],
                json_mode=self.json_mode,
                max_tokens=600,
            )
            return parse_facts(raw)
        except Exception as exc:
            log.warning("fact extraction by model failed, using rules: %s", exc)
            if self.on_fallback is not None:
                self.on_fallback(exc)
            return self.fallback.extract_sync(user_text)
