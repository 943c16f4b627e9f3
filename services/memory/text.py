"""The one tokenizer for lexical matching (BM25 and memory relevance).

Lowercased unicode words, a small English stopword list and a light suffix
stemmer (plural and ``-ing``/``-ed`` endings), so "recipes" matches "recipe"
and "hiking" matches "hike" without a stemming library. Both the index side
and the query side must use the same function, which is why it lives here.
"""

from __future__ import annotations

import re

__all__ = ["STOPWORDS", "stem", "tokenize"]

_WORD = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)?", re.UNICODE)

_STOPWORD_TEXT = """
    a an and are as at be been but by can could did do does for from had has have he her
    him his how i if in into is it its just me my no not of on or our she so than that the
    their them then there these they this those to too us was we were what when where which
    who whom why will with would you your yours i'm it's don't"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def stem(word: str) -> str:
    """Strip common English inflections; leaves short and non-ASCII words alone.

    A final ``e`` is dropped after the suffix so "hike", "hikes" and "hiking"
    all become "hik": stems are match keys, not words.
    """
    if len(word) <= 3 or not word.isascii():
        return word
    base = _strip_suffix(word)
    if base.endswith("e") and len(base) > 3:
        base = base[:-1]
    return base


def _strip_suffix(word: str) -> str:
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("sses"):
        return word[:-2]
    for suffix, min_len in (("ing", 6), ("ed", 5)):
        if word.endswith(suffix) and len(word) >= min_len:
            base = word[: -len(suffix)]
            if base[-1] == base[-2] and base[-1] not in "lsz":
                base = base[:-1]
            return base
    if word.endswith(("ches", "shes", "xes", "zes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def tokenize(text: str, *, stemming: bool = True) -> list[str]:
    """Index/query terms of ``text``, in order, duplicates kept (BM25 needs tf)."""
    words = (w.replace("\u2019", "'") for w in _WORD.findall(text.lower()))
    terms = [w for w in words if w not in STOPWORDS]
    return [stem(t) for t in terms] if stemming else terms
