"""A cheap, deterministic token estimate.

Why not a real tokenizer: every budget decision in the memory service
(window, summary, context) must be reproducible on replay and must not
depend on downloading a vocabulary at start-up. Budgets carry a margin, so
an estimate that is a little high is fine; one that is low is not.

The rule, tuned on English prose against BPE tokenizers (cl100k/o200k):

* an ASCII word costs ``ceil(len / 4)`` tokens, at least 1 — short words
  are one token each, long words split into roughly 4-character pieces;
* every non-ASCII letter or digit costs 1 token (CJK is ~1 token per
  character; accented Latin is over-counted, which errs on the safe side);
* every punctuation or symbol character costs 1 token;
* whitespace is free (BPE folds it into the next word).

For ordinary prose this lands within about ±15% of cl100k and, unlike a
plain ``len / 4``, does not under-count code, numbers and punctuation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "MESSAGE_OVERHEAD",
    "estimate_message_tokens",
    "estimate_tokens",
    "truncate_to_tokens",
]

#: Tokens a chat message costs beyond its content (role, separators), as in
#: OpenAI's own accounting of chat formats.
MESSAGE_OVERHEAD = 4

_PIECE = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def _piece_tokens(piece: str) -> int:
    if piece.isascii():
        if piece[0].isalnum() or piece[0] == "_":
            return max(1, (len(piece) + 3) // 4)
        return 1
    ascii_chars = sum(1 for ch in piece if ch.isascii())
    other = len(piece) - ascii_chars
    return other + (ascii_chars + 3) // 4


def estimate_tokens(text: str) -> int:
    """Estimated token count of ``text`` (0 for empty text)."""
    if not isinstance(text, str):
        raise TypeError(f"estimate_tokens expects str, got {type(text).__name__}")
    return sum(_piece_tokens(p) for p in _PIECE.findall(text))


def _content_text(content: Any) -> str:
    """Text of a chat ``content`` field: a string, or a list of parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for part in content:
            if isinstance(part, Mapping):
                text = part.get("text")
                parts.append(text if isinstance(text, str) else json.dumps(part, default=str))
            else:
                parts.append(str(part))
        return "\n".join(parts)
    return json.dumps(content, default=str)


def estimate_message_tokens(message: Mapping[str, Any]) -> int:
    """Estimated tokens of one chat message: content, tool calls and overhead."""
    total = MESSAGE_OVERHEAD + estimate_tokens(_content_text(message.get("content")))
    for call in message.get("tool_calls") or ():
        if isinstance(call, Mapping):
            fn = call.get("function")
            if isinstance(fn, Mapping):
                total += estimate_tokens(str(fn.get("name", "")))
                total += estimate_tokens(str(fn.get("arguments", "")))
            else:
                total += estimate_tokens(json.dumps(call, default=str))
    name = message.get("name")
    if isinstance(name, str):
        total += estimate_tokens(name)
    return total


def truncate_to_tokens(text: str, max_tokens: int, *, marker: str = " …") -> str:
    """The longest prefix of ``text`` (cut at a word end) within ``max_tokens``.

    The ``marker`` is appended when text was cut and is counted in the budget.
    """
    if max_tokens <= 0:
        return ""
    if estimate_tokens(text) <= max_tokens:
        return text
    room = max_tokens - estimate_tokens(marker)
    if room <= 0:
        return ""
    used = 0
    end = 0
    for match in _PIECE.finditer(text):
        cost = _piece_tokens(match.group())
        if used + cost > room:
            break
        used += cost
        end = match.end()
    return text[:end].rstrip() + marker
