"""Knowledge: upload or delete documents by publishing to ``mindstream.knowledge.documents.v1``.

The memory service ingests them (chunks, embeds, indexes); the answer is
202 because ingestion happens after the request returns.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path

from schemas.base import Id
from schemas.knowledge import KnowledgeDocument
from schemas.topics import KNOWLEDGE_DOCUMENTS
from services.control_plane.api.context import CallerDep, ContextDep
from services.control_plane.api.models import KnowledgeAccepted, KnowledgeUpload
from services.control_plane.tokens import Scope

router = APIRouter(prefix="/knowledge/documents", tags=["knowledge"])


@router.post("", status_code=202, response_model=KnowledgeAccepted,
             summary="Upload (or replace) a knowledge document")
async def upload_document(body: KnowledgeUpload, ctx: ContextDep,
                          caller: CallerDep) -> KnowledgeAccepted:
    document_id = body.document_id or f"doc-{uuid.uuid4().hex}"
    async with ctx.audited(caller, Scope.OPERATOR, "knowledge.upload",
                           ("document", document_id)) as audit:
        document = KnowledgeDocument(document_id=document_id, source=body.source,
                                     title=body.title, text=body.text, metadata=body.metadata,
                                     published_at=ctx.clock())
        audit.after = {"text": document.text, "source": document.source}
        audit.details = {"chars": len(document.text)}
        await ctx.publisher.publish(KNOWLEDGE_DOCUMENTS, document)
    return KnowledgeAccepted(document_id=document_id, deleted=False)


@router.delete("/{document_id}", status_code=202, response_model=KnowledgeAccepted,
               summary="Delete a knowledge document")
async def delete_document(document_id: Annotated[Id, Path()], ctx: ContextDep,
                          caller: CallerDep) -> KnowledgeAccepted:
    async with ctx.audited(caller, Scope.OPERATOR, "knowledge.delete",
                           ("document", document_id)):
        await ctx.publisher.publish(KNOWLEDGE_DOCUMENTS, KnowledgeDocument(
            document_id=document_id, source="control-plane", deleted=True,
            published_at=ctx.clock()))
    return KnowledgeAccepted(document_id=document_id, deleted=True)
