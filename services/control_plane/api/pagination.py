"""Keyset pagination: ``limit`` (1-200) and an opaque ``cursor`` from the previous page.

A cursor holds the sort value and ``_id`` of the last item, so a page is one
indexed range query however deep the reader goes, and items inserted
meanwhile never shift what comes next.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel, Field
from pymongo.asynchronous.collection import AsyncCollection

from services.control_plane.errors import ApiProblem
from shared.mongo import Doc

__all__ = ["Cursor", "Limit", "Page", "decode_offset", "offset_cursor", "paginate"]

T = TypeVar("T")
MAX_LIMIT = 200

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page (at most 200).")]
Cursor = Annotated[str | None, Query(max_length=512, description="next_cursor of the previous page.")]


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(default=None, description="Pass as cursor for the next page.")


def _encode(value: Any, doc_id: Any) -> str:
    tagged = {"dt": value.isoformat()} if isinstance(value, datetime) else {"v": value}
    raw = json.dumps([tagged, doc_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str) -> tuple[Any, Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        tagged, doc_id = json.loads(raw)
        value = datetime.fromisoformat(tagged["dt"]) if "dt" in tagged else tagged["v"]
    except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError) as exc:
        raise ApiProblem("the cursor is not one this API gave out") from exc
    if not isinstance(doc_id, str | int):
        raise ApiProblem("the cursor is not one this API gave out")
    return value, doc_id


def offset_cursor(offset: int) -> str:
    """For lists another service hands over whole (no keyset to resume from)."""
    return _encode(offset, "offset")


def decode_offset(cursor: str | None) -> int:
    if not cursor:
        return 0
    value, marker = _decode(cursor)
    if marker != "offset" or not isinstance(value, int) or value < 0:
        raise ApiProblem("the cursor is not one this API gave out")
    return value


async def paginate(coll: AsyncCollection[Doc], query: Doc, *, sort_field: str, limit: int,
                   cursor: str | None, ascending: bool = False) -> tuple[list[Doc], str | None]:
    """One page of ``coll`` by (sort_field, _id), newest first unless ``ascending``."""
    op = "$gt" if ascending else "$lt"
    if cursor:
        value, last_id = _decode(cursor)
        query = {"$and": [query, {"$or": [{sort_field: {op: value}},
                                          {sort_field: value, "_id": {op: last_id}}]}]}
    direction = 1 if ascending else -1
    docs = await coll.find(query).sort([(sort_field, direction), ("_id", direction)]).limit(
        limit + 1).to_list()
    if len(docs) <= limit:
        return docs, None
    last = docs[limit - 1]
    return docs[:limit], _encode(last.get(sort_field), last["_id"])
