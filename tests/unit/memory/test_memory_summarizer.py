from __future__ import annotations

from typing import Any

import pytest

from services.memory.model_client import ChatModel
from services.memory.summarizer import ExtractiveSummarizer, ModelSummarizer
from shared.resilience import CircuitBreaker

pytestmark = pytest.mark.unit

CONVERSATION: list[dict[str, Any]] = [
    {"role": "user", "content": "I want to plan a vegetarian dinner for 8 guests. Hi there."},
    {"role": "assistant", "content": "Sure. Do you have a budget? Happy to help."},
    {"role": "user", "content": "We decided the budget is 120 euros. Ok."},
    {"role": "tool", "content": "search results: many many recipes listed here for you"},
    {"role": "assistant", "content": "Great, we should start with a lentil soup from Maria."},
]


async def test_extractive_keeps_goal_and_key_sentences() -> None:
    summary = await ExtractiveSummarizer().summarize(None, CONVERSATION)
    lines = summary.splitlines()
    assert lines[0] == "Goal: I want to plan a vegetarian dinner for 8 guests."
    assert "- We decided the budget is 120 euros." in lines
    assert not any("Hi there" in line or line == "- Ok." for line in lines)


async def test_extractive_folds_into_previous_summary_without_duplicates() -> None:
    s = ExtractiveSummarizer()
    first = await s.summarize(None, CONVERSATION)
    again = await s.summarize(first, CONVERSATION[2:3])
    assert again.count("budget is 120 euros") == 1
    assert again.startswith("Goal: I want to plan a vegetarian dinner")
    more = await s.summarize(again, [{"role": "user", "content": "We must finish by 9pm sharp."}])
    assert more.splitlines()[-1] == "- We must finish by 9pm sharp."


async def test_extractive_is_bounded_and_keeps_goal() -> None:
    s = ExtractiveSummarizer(max_chars=400, max_points=5)
    summary: str | None = None
    for i in range(50):
        msgs = [{"role": "user", "content": f"Goal {i}: we decided item {i} must ship on day {i}."}]
        summary = await s.summarize(summary, msgs)
        assert len(summary) <= 400
    assert summary is not None
    assert summary.startswith("Goal: Goal 0: we decided item 0 must ship on day 0.")
    assert "item 49" in summary
    assert summary.count("\n- ") <= 5


async def test_extractive_treats_free_text_previous_summary_as_a_point() -> None:
    summary = await ExtractiveSummarizer().summarize("The user likes tea.", [])
    assert "- Earlier: The user likes tea." in summary


async def test_model_summarizer_sends_previous_summary_and_timeout(fake_openai: Any) -> None:
    client = fake_openai(["The user plans a vegetarian dinner for 8 on 120 euros."])
    summarizer = ModelSummarizer(ChatModel(client, "small-model", timeout=7.5))
    out = await summarizer.summarize("Earlier summary text", CONVERSATION)
    assert out == "The user plans a vegetarian dinner for 8 on 120 euros."
    [call] = client.chat_calls
    assert call["model"] == "small-model"
    assert call["timeout"] == 7.5
    assert "Earlier summary text" in call["messages"][1]["content"]
    assert "user: We decided the budget is 120 euros." in call["messages"][1]["content"]


async def test_model_summarizer_bounds_a_long_reply(fake_openai: Any) -> None:
    client = fake_openai(["word " * 1000])
    out = await ModelSummarizer(ChatModel(client, "m"), max_chars=300).summarize(None, CONVERSATION)
    assert len(out) <= 300


@pytest.mark.parametrize("reply", [TimeoutError("slow"), "   "])
async def test_model_summarizer_falls_back_to_extractive(fake_openai: Any, reply: Any) -> None:
    failures: list[BaseException] = []
    summarizer = ModelSummarizer(ChatModel(fake_openai([reply]), "m"), on_fallback=failures.append)
    out = await summarizer.summarize(None, CONVERSATION)
    assert out == await ExtractiveSummarizer().summarize(None, CONVERSATION)
    assert len(failures) == 1


async def test_open_breaker_skips_the_model(fake_openai: Any) -> None:
    breaker = CircuitBreaker("summary", failure_threshold=1, reset_timeout=60, clock=lambda: 0.0)
    breaker.record_failure()
    client = fake_openai([])
    out = await ModelSummarizer(ChatModel(client, "m", breaker=breaker)).summarize(
        None, CONVERSATION
    )
    assert out.startswith("Goal: ")
    assert client.chat_calls == []
