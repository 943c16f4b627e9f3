"""Running summaries of session history that fell out of the window.

Two implementations of one protocol:

* :class:`ModelSummarizer` asks a chat model to fold new messages into the
  previous summary; on any model failure it falls back to the extractive one,
  because a slightly worse summary is better than a failed run.
* :class:`ExtractiveSummarizer` needs no model and is deterministic: it keeps
  the user's first stated goal and the sentences that carry decisions, needs,
  numbers and names, within a fixed length.

Both return text bounded by ``max_chars``, so a summary never crowds out the
window that it is prepended to.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from services.memory.model_client import ChatModel
from services.memory.tokens import truncate_to_tokens

__all__ = [
    "ExtractiveSummarizer",
    "ModelSummarizer",
    "Summarizer",
]

log = logging.getLogger(__name__)


class Summarizer(Protocol):
    async def summarize(
        self, previous_summary: str | None, messages: list[dict[str, Any]]
    ) -> str: ...


_SENTENCE = re.compile(r"[^.!?\n]+[.!?]*")
_CUES = re.compile(
    r"\b(decid\w*|agree\w*|must|need\w*|want\w*|prefer\w*|important|remember|deadline|goal|"
    r"plan\w*|will|should|confirm\w*|chose|choose|budget|require\w*|todo|next step|"
    r"problem|error|fix\w*|because)\b",
    re.IGNORECASE,
)
_PROPER = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]+")
_GOAL = "Goal: "
_POINTS = "Key points:"


def _text(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return ""


def _norm(text: str) -> str:
    return " ".join(text.lower().split()).rstrip(".!?")


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.findall(text) if s.strip()]


def _score(sentence: str, role: str) -> int:
    words = sentence.split()
    if len(words) < 4:
        return -1
    score = 2 * len(_CUES.findall(sentence))
    score += 1 if any(ch.isdigit() for ch in sentence) else 0
    score += 1 if _PROPER.search(sentence) else 0
    score += 1 if role == "user" else 0
    score -= 1 if role == "tool" else 0
    return score


def _parse_previous(previous: str | None) -> tuple[str | None, list[str]]:
    """Goal and points of an earlier summary; free text becomes one point."""
    if not previous or not previous.strip():
        return None, []
    goal: str | None = None
    points: list[str] = []
    free: list[str] = []
    for raw in previous.strip().splitlines():
        line = raw.strip()
        if line.startswith(_GOAL):
            goal = line[len(_GOAL) :].strip() or None
        elif line.startswith("- "):
            points.append(line[2:].strip())
        elif line and line != _POINTS:
            free.append(line)
    if free:
        points.insert(0, "Earlier: " + " ".join(free))
    return goal, points


@dataclass
class ExtractiveSummarizer:
    """Deterministic summary: first user goal plus the highest-scoring sentences.

    Sentences are scored by cue words (decided, need, prefer, deadline...),
    numbers, proper names and speaker (the user's words weigh more, tool output
    less). New points are appended after earlier ones; when the summary grows
    past ``max_points`` or ``max_chars`` the oldest points go first, the goal
    never does.
    """

    max_chars: int = 1500
    max_points: int = 12
    points_per_fold: int = 4
    max_point_chars: int = 220

    async def summarize(self, previous_summary: str | None, messages: list[dict[str, Any]]) -> str:
        return self.summarize_sync(previous_summary, messages)

    def summarize_sync(
        self, previous_summary: str | None, messages: Sequence[Mapping[str, Any]]
    ) -> str:
        goal, points = _parse_previous(previous_summary)
        candidates: list[tuple[int, int, str]] = []
        order = 0
        for message in messages:
            role = str(message.get("role", ""))
            for sentence in _sentences(_text(message)):
                if goal is None and role == "user" and len(sentence.split()) >= 2:
                    goal = self._clip(sentence)
                    continue
                candidates.append((_score(sentence, role), order, sentence))
                order += 1
        best = sorted((c for c in candidates if c[0] > 0), key=lambda c: (-c[0], -c[1]))[
            : self.points_per_fold
        ]
        seen = {_norm(p) for p in points}
        for _, _, sentence in sorted(best, key=lambda c: c[1]):
            clipped = self._clip(sentence)
            if _norm(clipped) not in seen:
                seen.add(_norm(clipped))
                points.append(clipped)
        points = points[-self.max_points :]
        return self._render(goal, points)

    def _clip(self, sentence: str) -> str:
        sentence = " ".join(sentence.split())
        if len(sentence) <= self.max_point_chars:
            return sentence
        return sentence[: self.max_point_chars - 1].rsplit(" ", 1)[0] + "…"

    def _render(self, goal: str | None, points: list[str]) -> str:
        while True:
            lines = [f"{_GOAL}{goal}"] if goal else []
            if points:
                lines.append(_POINTS)
                lines.extend(f"- {p}" for p in points)
            text = "\n".join(lines)
            if len(text) <= self.max_chars or not points:
                return text[: self.max_chars]
            points = points[1:]


_SYSTEM_PROMPT = (
    "You maintain the running summary of a conversation between a user and an "
    "assistant. Merge the new messages into the previous summary. Keep: the user's "
    "goal, decisions made, facts and constraints the user stated, results of tool "
    "calls that matter later, and open questions. Drop small talk. Write plain "
    "sentences, no preamble, at most {words} words."
)


@dataclass
class ModelSummarizer:
    """A model-written summary, falling back to extractive on model failure.

    ``on_fallback`` is told of each failure so the app can count it; the run
    is never failed for want of a summary.
    """

    model: ChatModel
    max_chars: int = 1500
    max_message_tokens: int = 400
    fallback: ExtractiveSummarizer = field(default_factory=ExtractiveSummarizer)
    on_fallback: Callable[[BaseException], None] | None = None

    async def summarize(self, previous_summary: str | None, messages: list[dict[str, Any]]) -> str:
        rendered = "\n".join(
            f"{m.get('role', '?')}: {truncate_to_tokens(_text(m), self.max_message_tokens)}"
            for m in messages
            if _text(m).strip()
        )
        prompt = (
            f"Previous summary:\n{previous_summary or '(none)'}\n\n"
            f"New messages:\n{rendered or '(none)'}\n\nUpdated summary:"
        )
        words = max(30, self.max_chars // 7)
        try:
            text = await self.model.complete(
                [
                    {"role": "system", "content": _SYSTEM_PROMPT.format(words=words)},
                    {"role": "user", "content": prompt},
                ],
                max_tokens=max(64, self.max_chars // 3),
            )
        except Exception as exc:
            log.warning("summary model failed, using extractive summary: %s", exc)
            if self.on_fallback is not None:
                self.on_fallback(exc)
            return self.fallback.summarize_sync(previous_summary, messages)
        if len(text) > self.max_chars:
            text = text[: self.max_chars - 1].rsplit(" ", 1)[0] + "…"
        return text
