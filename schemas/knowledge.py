"""Knowledge search: the query reasoning sends, and the hits memory answers with.

A query is answered on ``mindstream.tools.results.v1`` as a :class:`~schemas.tools.ToolResult`
whose ``tool`` is :data:`KNOWLEDGE_TOOL` and whose ``content`` is
``{"hits": [KnowledgeHit, ...]}``, so reasoning waits for knowledge the same
way it waits for any tool.

Documents enter the knowledge base as :class:`KnowledgeDocument` messages
(``mindstream knowledge add`` publishes them); the memory service chunks,
embeds and indexes them. Re-publishing a document with the same id replaces
it (unchanged text is a no-op); ``deleted`` removes it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, ClassVar

from pydantic import Field, model_validator

from schemas.base import (
    AgentRef,
    ContractModel,
    Id,
    Message,
    Metadata,
    ShortText,
    Text,
    UtcDatetime,
)

__all__ = [
    "KNOWLEDGE_TOOL",
    "MAX_DOCUMENT_CHARS",
    "KnowledgeDocument",
    "KnowledgeHit",
    "KnowledgeQuery",
]

MAX_DOCUMENT_CHARS = 512_000
"""Longest document text in one message. The encoded body must also stay under
1 MiB (Kafka's default limit), which mostly-ASCII text of this length does."""

KNOWLEDGE_TOOL = "knowledge_search"
"""Tool name under which knowledge queries appear to the model and in tool results."""


class KnowledgeHit(ContractModel):
    """One chunk of a knowledge document that matched a query."""

    chunk_id: Id = Field(description="Id of the matching chunk.")
    document_id: Id = Field(description="Id of the document the chunk belongs to.")
    text: Text = Field(description="Text of the chunk.")
    score: float = Field(ge=-1.0, le=1.0, description="Cosine similarity to the query (1 = same).")
    title: ShortText | None = Field(default=None, description="Title of the document, if known.")
    source: ShortText | None = Field(
        default=None, description="Where the document came from (URL or file name), if known."
    )
    metadata: Metadata = Field(default_factory=dict, description="Labels of the document.")


class KnowledgeQuery(Message):
    """A similarity search over the knowledge base on behalf of a run."""

    ce_type: ClassVar[str] = "mindstream.knowledge.query"

    call_id: Id = Field(description="Idempotency key of the query; the result carries it back.")
    run_id: Id = Field(description="Run the query belongs to.")
    session_id: Id = Field(description="Session of the run; the Kafka key.")
    agent_id: AgentRef = Field(description="Agent asking; its knowledge setting must be on.")
    query: Text = Field(min_length=1, description="Text to search for.")
    top_k: int = Field(default=5, ge=1, le=50, description="Most hits to return.")
    min_score: float | None = Field(
        default=None, ge=-1.0, le=1.0, description="Drop hits scoring below this, if set."
    )
    filters: Metadata = Field(
        default_factory=dict,
        description="Exact-match filters on document metadata labels (all must match).",
    )


DocumentText = Annotated[str, Field(max_length=MAX_DOCUMENT_CHARS)]


class KnowledgeDocument(Message):
    """A document to add to (or, with ``deleted``, remove from) the knowledge base."""

    ce_type: ClassVar[str] = "mindstream.knowledge.document"

    document_id: Id = Field(description="Stable id of the document; the Kafka key.")
    source: ShortText = Field(
        min_length=1, description="Where the document came from (file path or URL)."
    )
    title: ShortText | None = Field(default=None, description="Title of the document, if known.")
    text: DocumentText = Field(
        default="", description="Full text (Markdown or plain); empty only when deleted."
    )
    metadata: Metadata = Field(
        default_factory=dict, description="Labels that knowledge queries can filter on."
    )
    deleted: bool = Field(default=False, description="True removes the document and its chunks.")
    published_at: UtcDatetime = Field(
        default_factory=lambda: datetime.now(UTC),
        description="When this version of the document was published.",
    )

    @model_validator(mode="after")
    def _text_unless_deleted(self) -> KnowledgeDocument:
        if not self.deleted and not self.text.strip():
            raise ValueError("text is required unless the document is deleted")
        return self
