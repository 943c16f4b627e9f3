"""Split knowledge documents into overlapping chunks for search.

Every chunk is an exact span of the original text (``text[char_start:char_end]``)
so a hit can be shown in place and positions survive re-chunking. Chunks
never cross a Markdown heading; inside a section they are packed from whole
paragraphs (fenced code blocks count as one), and only a paragraph larger
than the budget is split, at sentence ends, or at word ends as a last resort.
Consecutive chunks of a section overlap by about ``overlap_tokens`` so a
sentence cut at a border is whole in one of them.

A document's content hash decides re-ingestion: same hash → nothing to do,
different hash → replace all of the source's chunks.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Literal

from services.memory.errors import InvalidDocumentError
from services.memory.tokens import estimate_tokens

__all__ = ["Chunk", "IngestPlan", "chunk_document", "content_hash", "plan_ingest"]

_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")
_FENCE = re.compile(r"^[ \t]*(```|~~~)")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n")
_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class Chunk:
    """A span of one document, with where it came from."""

    id: str
    source: str
    doc_hash: str
    index: int
    text: str
    char_start: int
    char_end: int
    heading_path: tuple[str, ...]
    token_estimate: int

    @property
    def index_text(self) -> str:
        """Text to index: the heading path gives a chunk the words of its section title."""
        if not self.heading_path:
            return self.text
        return " / ".join(self.heading_path) + "\n" + self.text


@dataclass(frozen=True)
class IngestPlan:
    action: Literal["unchanged", "insert", "replace"]
    source: str
    doc_hash: str
    chunks: tuple[Chunk, ...]


@dataclass(frozen=True)
class _Block:
    start: int
    end: int
    section: int
    path: tuple[str, ...]
    heading: bool


def content_hash(text: str) -> str:
    """SHA-256 of the text with line endings and trailing whitespace normalised.

    Saving a file on Windows or trimming trailing spaces is not a change worth
    re-embedding a document for.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    normal = "\n".join(line.rstrip() for line in lines).strip("\n")
    return hashlib.sha256(normal.encode("utf-8")).hexdigest()


def _blocks(text: str, markdown: bool) -> list[_Block]:
    blocks: list[_Block] = []
    stack: list[tuple[int, str]] = []
    section = 0
    para_start: int | None = None
    para_end = 0
    fence: str | None = None
    pos = 0

    def close() -> None:
        nonlocal para_start
        if para_start is not None:
            path = tuple(title for _, title in stack)
            blocks.append(_Block(para_start, para_end, section, path, heading=False))
            para_start = None

    for line in text.splitlines(keepends=True):
        start, content = pos, line.rstrip("\r\n")
        pos += len(line)
        end = start + len(content.rstrip())
        if fence is not None:
            para_end = end if content.strip() else para_end
            if _FENCE.match(content) and content.strip().startswith(fence):
                fence = None
                para_end = end
            continue
        heading = _HEADING.match(content) if markdown else None
        if heading:
            close()
            level = len(heading.group(1))
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, heading.group(2).strip()))
            section += 1
            path = tuple(title for _, title in stack)
            blocks.append(_Block(start, end, section, path, heading=True))
            continue
        fence_match = _FENCE.match(content) if markdown else None
        if not content.strip():
            close()
            continue
        if para_start is None:
            para_start = start + (len(content) - len(content.lstrip()))
        para_end = end
        if fence_match:
            fence = fence_match.group(1)
    close()
    return blocks


def _spans(text: str, start: int, end: int, pattern: re.Pattern[str]) -> list[tuple[int, int]]:
    """Non-blank sub-spans of ``text[start:end]`` separated by ``pattern``."""
    spans: list[tuple[int, int]] = []
    cursor = start
    for match in pattern.finditer(text, start, end):
        if text[cursor : match.start()].strip():
            spans.append((cursor, match.start()))
        cursor = match.end()
    if text[cursor:end].strip():
        spans.append((cursor, end))
    return spans


def _split_big(text: str, start: int, end: int, max_tokens: int) -> list[tuple[int, int]]:
    """Pieces of an oversized paragraph, each within ``max_tokens``."""
    pieces: list[tuple[int, int]] = []
    for s_start, s_end in _spans(text, start, end, _SENTENCE_END):
        if estimate_tokens(text[s_start:s_end]) <= max_tokens:
            pieces.append((s_start, s_end))
            continue
        words = [(m.start(), m.end()) for m in _WORD.finditer(text, s_start, s_end)]
        w_start = words[0][0]
        prev_end = w_start
        for w0, w1 in words:
            if estimate_tokens(text[w_start:w1]) > max_tokens and prev_end > w_start:
                pieces.append((w_start, prev_end))
                w_start = w0
            prev_end = w1
        pieces.append((w_start, prev_end))
    return pieces


def _overlap_start(text: str, start: int, end: int, overlap_tokens: int) -> int:
    """Start of the longest word-aligned suffix of ``text[start:end]`` within the overlap."""
    best = end
    for match in reversed(list(_WORD.finditer(text, start, end))):
        if estimate_tokens(text[match.start() : end]) > overlap_tokens:
            break
        best = match.start()
    return best


def chunk_document(
    text: str,
    *,
    source: str,
    max_tokens: int = 300,
    overlap_tokens: int = 40,
    markdown: bool = True,
) -> list[Chunk]:
    """Overlapping chunks of ``text``; see the module docstring for the rules."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidDocumentError(f"document {source!r} is empty or not text")
    if not source:
        raise InvalidDocumentError("a document needs a source")
    if max_tokens < 8 or not 0 <= overlap_tokens < max_tokens:
        raise ValueError("need max_tokens >= 8 and 0 <= overlap_tokens < max_tokens")
    doc_hash = content_hash(text)
    blocks = _blocks(text, markdown)
    spans: list[tuple[int, int, tuple[str, ...]]] = []
    for section in sorted({b.section for b in blocks}):
        members = [b for b in blocks if b.section == section]
        has_body = any(not b.heading for b in members)
        pieces: list[tuple[int, int, bool]] = []
        for block in members:
            if estimate_tokens(text[block.start : block.end]) <= max_tokens:
                pieces.append((block.start, block.end, block.heading))
            else:
                pieces += [
                    (s, e, False) for s, e in _split_big(text, block.start, block.end, max_tokens)
                ]
        path = members[0].path
        for c_start, c_end, only_heading in _pack(text, pieces, max_tokens, overlap_tokens):
            if not (only_heading and has_body):
                spans.append((c_start, c_end, path))
    return [
        Chunk(
            id=hashlib.sha256(f"{source}\x1f{doc_hash}\x1f{i}".encode()).hexdigest()[:24],
            source=source,
            doc_hash=doc_hash,
            index=i,
            text=text[start:end],
            char_start=start,
            char_end=end,
            heading_path=path,
            token_estimate=estimate_tokens(text[start:end]),
        )
        for i, (start, end, path) in enumerate(spans)
    ]


def _pack(
    text: str, pieces: list[tuple[int, int, bool]], max_tokens: int, overlap_tokens: int
) -> list[tuple[int, int, bool]]:
    """Greedy packing of a section's pieces into ``(start, end, heading_only)`` spans."""
    out: list[tuple[int, int, bool]] = []
    if not pieces:
        return out
    start, end, heading_only = pieces[0]
    for p_start, p_end, p_heading in pieces[1:]:
        if estimate_tokens(text[start:p_end]) <= max_tokens:
            end, heading_only = p_end, heading_only and p_heading
            continue
        out.append((start, end, heading_only))
        new_start = _overlap_start(text, start, end, overlap_tokens) if not heading_only else end
        if new_start >= end or estimate_tokens(text[new_start:p_end]) > max_tokens:
            new_start = p_start
        start, end, heading_only = new_start, p_end, p_heading
    out.append((start, end, heading_only))
    return out


def plan_ingest(
    source: str,
    text: str,
    *,
    existing_hash: str | None,
    max_tokens: int = 300,
    overlap_tokens: int = 40,
    markdown: bool = True,
) -> IngestPlan:
    """What re-ingesting ``source`` means: nothing, a first insert, or a replacement."""
    if not isinstance(text, str):
        raise InvalidDocumentError(f"document {source!r} is not text")
    doc_hash = content_hash(text)
    if existing_hash == doc_hash:
        return IngestPlan("unchanged", source, doc_hash, ())
    chunks = chunk_document(
        text,
        source=source,
        max_tokens=max_tokens,
        overlap_tokens=overlap_tokens,
        markdown=markdown,
    )
    action: Literal["insert", "replace"] = "insert" if existing_hash is None else "replace"
    return IngestPlan(action, source, doc_hash, tuple(chunks))
