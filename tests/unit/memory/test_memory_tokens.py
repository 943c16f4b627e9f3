from __future__ import annotations

import pytest

from services.memory.tokens import (
    MESSAGE_OVERHEAD,
    estimate_message_tokens,
    estimate_tokens,
    truncate_to_tokens,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0),
        ("   \n\t", 0),
        ("hello", 2),
        ("a cat sat", 3),
        ("internationalization", 5),
        ("x = f(1, 2);", 9),
        ("日本語", 3),
    ],
)
def test_estimate_tokens(text: str, expected: int) -> None:
    assert estimate_tokens(text) == expected


def test_estimate_is_close_to_four_chars_per_token_on_prose() -> None:
    prose = (
        "The memory service keeps a running summary of each session so that long "
        "conversations still fit in the model's context window. "
    ) * 20
    estimate = estimate_tokens(prose)
    assert 0.8 * len(prose) / 4 <= estimate <= 1.4 * len(prose) / 4


def test_estimate_rejects_non_text() -> None:
    with pytest.raises(TypeError):
        estimate_tokens(42)  # type: ignore[arg-type]


def test_message_tokens_count_overhead_content_and_tool_calls() -> None:
    plain = {"role": "user", "content": "hello there"}
    assert estimate_message_tokens(plain) == MESSAGE_OVERHEAD + estimate_tokens("hello there")
    call = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c1", "function": {"name": "search", "arguments": '{"q": "weather"}'}}
        ],
    }
    assert estimate_message_tokens(call) > MESSAGE_OVERHEAD + 3
    parts = {"role": "user", "content": [{"type": "text", "text": "hello there"}]}
    assert estimate_message_tokens(parts) == estimate_message_tokens(plain)


def test_truncate_to_tokens_fits_and_cuts_at_words() -> None:
    text = "one two three four five six seven eight nine ten"
    cut = truncate_to_tokens(text, 5)
    assert estimate_tokens(cut) <= 5
    assert cut.endswith("…")
    assert text.startswith(cut[:-2])
    assert truncate_to_tokens(text, 100) == text
    assert truncate_to_tokens(text, 0) == ""
