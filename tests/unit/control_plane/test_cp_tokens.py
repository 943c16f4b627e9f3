"""Tokens: their shape, scopes, and that only hashes are kept."""

from __future__ import annotations

import pytest

from services.control_plane.tokens import Scope, hash_token, new_token, parse_token

pytestmark = pytest.mark.unit


def test_new_token_has_id_prefix_and_parses_back() -> None:
    token_id, token = new_token()
    assert token.startswith(f"ms_{token_id}_")
    assert parse_token(token) == token_id


def test_tokens_are_random() -> None:
    assert len({new_token()[1] for _ in range(50)}) == 50


@pytest.mark.parametrize("text", ["", "ms_", "ms_abc_def", "Bearer x", "ms_" + "0" * 16 + "_short",
                                  "xx_0123456789abcdef_" + "a" * 43])
def test_malformed_tokens_do_not_parse(text: str) -> None:
    assert parse_token(text) is None


def test_hash_is_sha256_hex_and_not_the_token() -> None:
    _, token = new_token()
    digest = hash_token(token)
    assert len(digest) == 64
    assert token not in digest


@pytest.mark.parametrize(
    ("have", "need", "allowed"),
    [
        (Scope.VIEWER, Scope.VIEWER, True),
        (Scope.VIEWER, Scope.OPERATOR, False),
        (Scope.OPERATOR, Scope.VIEWER, True),
        (Scope.OPERATOR, Scope.ADMIN, False),
        (Scope.ADMIN, Scope.OPERATOR, True),
        (Scope.ADMIN, Scope.ADMIN, True),
    ],
)
def test_scopes_are_ordered(have: Scope, need: Scope, allowed: bool) -> None:
    assert have.allows(need) is allowed
