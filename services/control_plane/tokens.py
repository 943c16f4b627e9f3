"""API tokens: ``ms_<id>_<secret>``, stored only as a SHA-256 hash, with a scope.

The id in the token lets the server find the one record to compare against
(no scan, no timing oracle across records); the comparison itself is
constant-time (:func:`hmac.compare_digest`). The plaintext exists only in
the answer to the create call. A bootstrap admin token from the environment
is hashed at start so a fresh install can be administered; it appears in
audit records as the actor ``token:bootstrap``.

Scopes are ordered: viewer < operator < admin; a token satisfies any scope
up to its own.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from services.control_plane.store import API_TOKENS
from shared.mongo import Doc

__all__ = [
    "BOOTSTRAP_TOKEN_ID",
    "Principal",
    "Scope",
    "TokenStore",
    "hash_token",
    "new_token",
    "parse_token",
]

BOOTSTRAP_TOKEN_ID = "bootstrap"  # noqa: S105 - an id, not a secret
_TOKEN = re.compile(r"^ms_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")


class Scope(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(Scope).index(self)

    def allows(self, needed: Scope) -> bool:
        return self.rank >= needed.rank


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's id (never the token), its name and its scope."""

    token_id: str
    name: str
    scope: Scope


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> tuple[str, str]:
    """A fresh (token id, plaintext token)."""
    token_id = secrets.token_hex(8)
    return token_id, f"ms_{token_id}_{secrets.token_urlsafe(32)}"


def parse_token(token: str) -> str | None:
    """The token id, or None when the text is not shaped like one of our tokens."""
    match = _TOKEN.fullmatch(token)
    return match.group(1) if match else None


def _public(doc: Doc) -> dict[str, Any]:
    return {k: doc.get(k) for k in ("name", "scope", "created_at", "created_by", "revoked_at",
                                    "revoked_by")} | {"id": doc["_id"]}


class TokenStore:
    def __init__(self, db: AsyncDatabase[Doc], *, bootstrap_token: str | None = None) -> None:
        self._coll = db[API_TOKENS]
        self._bootstrap_hash = hash_token(bootstrap_token) if bootstrap_token else None

    async def create(self, name: str, scope: Scope, *, created_by: str,
                     now: datetime | None = None) -> tuple[dict[str, Any], str]:
        """Store a new token; returns its public record and the plaintext (shown once)."""
        token_id, token = new_token()
        doc: Doc = {"_id": token_id, "name": name, "scope": scope.value,
                    "hash": hash_token(token), "created_at": now or datetime.now(UTC),
                    "created_by": created_by, "revoked_at": None, "revoked_by": None}
        await self._coll.insert_one(doc)
        return _public(doc), token

    async def get(self, token_id: str) -> dict[str, Any] | None:
        doc = await self._coll.find_one({"_id": token_id})
        return _public(doc) if doc else None

    async def list_tokens(self, *, include_revoked: bool = True) -> list[dict[str, Any]]:
        query: Doc = {} if include_revoked else {"revoked_at": None}
        return [_public(d) async for d in self._coll.find(query).sort("created_at", -1)]

    async def revoke(self, token_id: str, *, revoked_by: str, now: datetime | None = None,
                     ) -> dict[str, Any] | None:
        """Revoke (idempotent); None when no such token exists."""
        await self._coll.update_one(
            {"_id": token_id, "revoked_at": None},
            {"$set": {"revoked_at": now or datetime.now(UTC), "revoked_by": revoked_by}})
        return await self.get(token_id)

    async def authenticate(self, token: str) -> Principal | None:
        """The principal of a valid, unrevoked token; None otherwise."""
        presented = hash_token(token)
        if self._bootstrap_hash is not None and hmac.compare_digest(presented,
                                                                    self._bootstrap_hash):
            return Principal(BOOTSTRAP_TOKEN_ID, "bootstrap", Scope.ADMIN)
        token_id = parse_token(token)
        if token_id is None:
            return None
        doc = await self._coll.find_one({"_id": token_id})
        if doc is None or doc.get("revoked_at") is not None:
            return None
        if not hmac.compare_digest(presented, str(doc.get("hash", ""))):
            return None
        try:
            scope = Scope(doc["scope"])
        except (KeyError, ValueError):
            return None
        return Principal(token_id, str(doc.get("name", "")), scope)
