from __future__ import annotations

import itertools

import pytest

from services.memory.chunking import chunk_document, content_hash, plan_ingest
from services.memory.errors import InvalidDocumentError

pytestmark = pytest.mark.unit

STEPS = " ".join(f"Step {i} installs component {i} with care." for i in range(80))
DOC = f"""# Guide

Intro paragraph about the guide. It has two sentences.

## Install

{STEPS}

```python
def f():

    return 1
```

## Usage
Use it well.

### Advanced
Tune the cache size.
"""


def test_chunks_are_exact_spans_within_budget() -> None:
    chunks = chunk_document(DOC, source="guide.md", max_tokens=80, overlap_tokens=15)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert DOC[c.char_start : c.char_end] == c.text
        assert c.token_estimate <= 80
        assert c.text == c.text.strip()
        assert c.source == "guide.md"


def test_consecutive_chunks_of_a_section_overlap() -> None:
    chunks = chunk_document(DOC, source="guide.md", max_tokens=80, overlap_tokens=15)
    install = [c for c in chunks if c.heading_path == ("Guide", "Install")]
    assert len(install) > 3
    for prev, nxt in itertools.pairwise(install):
        assert nxt.char_start < prev.char_end  # overlap
        assert nxt.char_end > prev.char_end  # progress
        overlap = DOC[nxt.char_start : prev.char_end]
        assert prev.text.endswith(overlap)
        assert nxt.text.startswith(overlap)
    no_overlap = chunk_document(DOC, source="g", max_tokens=80, overlap_tokens=0)
    body = [c for c in no_overlap if c.heading_path == ("Guide", "Install")]
    assert all(b.char_start >= a.char_end for a, b in itertools.pairwise(body))


def test_headings_give_paths_and_are_never_crossed() -> None:
    chunks = chunk_document(DOC, source="guide.md", max_tokens=80, overlap_tokens=15)
    paths = [c.heading_path for c in chunks]
    assert paths[0] == ("Guide",)
    assert ("Guide", "Usage") in paths
    assert paths[-1] == ("Guide", "Usage", "Advanced")
    for c in chunks:
        headings = [line for line in c.text.splitlines() if line.startswith("#")]
        assert len(headings) <= 1
        if headings:
            assert c.text.startswith(headings[0])
    code = [c for c in chunks if "```python" in c.text]
    assert len(code) == 1
    assert code[0].text.rstrip().endswith("```")  # blank line inside fence did not split it
    assert chunks[-1].index_text.startswith("Guide / Usage / Advanced\n")


def test_plain_text_and_huge_sentence_are_split_by_words() -> None:
    text = "word " * 2000
    chunks = chunk_document(text, source="t.txt", max_tokens=50, overlap_tokens=5, markdown=False)
    assert len(chunks) > 30
    assert all(c.token_estimate <= 50 for c in chunks)
    assert chunks[-1].char_end == len(text.rstrip())
    covered = 0
    for c in chunks:
        assert c.char_start <= covered + 1
        covered = c.char_end
    assert covered == len(text.rstrip())


def test_content_hash_ignores_line_endings_and_trailing_space() -> None:
    assert content_hash("a\nb\n") == content_hash("a\r\nb   \r\n\n")
    assert content_hash("a\nb") != content_hash("a\nc")


def test_reingest_unchanged_is_a_noop_and_changed_replaces() -> None:
    first = plan_ingest("guide.md", DOC, existing_hash=None, max_tokens=80)
    assert first.action == "insert"
    assert first.chunks
    again = plan_ingest("guide.md", DOC.replace("\n", "\r\n"), existing_hash=first.doc_hash)
    assert again.action == "unchanged"
    assert again.chunks == ()
    assert again.doc_hash == first.doc_hash
    changed = plan_ingest(
        "guide.md", DOC + "\nNew line.", existing_hash=first.doc_hash, max_tokens=80
    )
    assert changed.action == "replace"
    assert changed.doc_hash != first.doc_hash
    assert {c.id for c in changed.chunks}.isdisjoint({c.id for c in first.chunks})
    same = chunk_document(DOC, source="guide.md", max_tokens=80)
    assert [c.id for c in same] == [c.id for c in first.chunks]


@pytest.mark.parametrize("text", ["", "   \n  "])
def test_empty_document_is_a_clear_error(text: str) -> None:
    with pytest.raises(InvalidDocumentError):
        chunk_document(text, source="x")


def test_bad_sizes_are_rejected() -> None:
    with pytest.raises(ValueError, match="overlap_tokens"):
        chunk_document("text", source="x", max_tokens=50, overlap_tokens=50)
