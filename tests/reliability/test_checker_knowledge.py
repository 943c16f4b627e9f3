"""The checker's knowledge check on hand-made documents and chunks in a real
MongoDB-wire server: it must catch a missing chunk, a chunk of an older version and
a chunk of a deleted document. (Runs with ``make test``.)"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.knowledge import KnowledgeDocument
from services.memory.chunking import plan_ingest
from tests.reliability.checker import Checker, Verdict

pytestmark = pytest.mark.integration


async def test_knowledge_must_be_exactly_the_last_version_of_each_document(mongo_db: Any) -> None:
    checker = Checker.__new__(Checker)  # only its database is needed here
    checker.db = mongo_db
    now = datetime.now(UTC)
    text = "# T\n\n" + " ".join(f"Word {i} is here." for i in range(600))
    live = KnowledgeDocument(document_id="d1", source="s", text=text, published_at=now)
    gone = KnowledgeDocument(document_id="d2", source="s", text="", deleted=True,
                             published_at=now)
    plan = plan_ingest("d1", text, existing_hash=None, max_tokens=300, overlap_tokens=40)
    old = plan_ingest("d1", "# T\n\nolder text", existing_hash=None)
    await mongo_db.knowledge_documents.insert_many([
        {"_id": "d1", "doc_hash": plan.doc_hash, "deleted": False},
        {"_id": "d2", "doc_hash": None, "deleted": True}])
    await mongo_db.knowledge_chunks.insert_many(
        [{"_id": c.id, "document_id": "d1"} for c in plan.chunks])
    good = Verdict("t")
    await checker.check_knowledge(good, {"d1": live, "d2": gone})
    assert not good.violations and good.figures["knowledge_chunks"] == len(plan.chunks) > 1

    await mongo_db.knowledge_chunks.insert_many([
        {"_id": old.chunks[0].id, "document_id": "d1"}, {"_id": "x", "document_id": "d2"}])
    await mongo_db.knowledge_chunks.delete_one({"_id": plan.chunks[1].id})
    bad = Verdict("t")
    await checker.check_knowledge(bad, {"d1": live, "d2": gone})
    assert bad.figures["knowledge_wrong"] == 2
    assert "1 chunks missing, 1 extra" in bad.violations[0]
    assert "d2" in bad.violations[1] and "1 extra" in bad.violations[1]
