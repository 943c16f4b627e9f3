"""Knowledge search: the query reasoning sends, and the hits memory answers with.

A query is answered on ``mindstream.tools.results.v1`` as a :class:`~schemas.tools.ToolResult`
whose ``tool`` is :data:`KNOWLEDGE_TOOL` and whose ``content`` is
``{"hits": [KnowledgeHit, ...]}``, so reasoning waits for knowledge the same
way it waits for any tool.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from schemas.base import AgentRef, ContractModel, Id, Message, Metadata, ShortText, Text

__all__ = ["KNOWLEDGE_TOOL", "KnowledgeHit", "KnowledgeQuery"]

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
