from __future__ import annotations

from typing import Any

import pytest

from services.memory.errors import InvalidHistoryError
from services.memory.summarizer import ExtractiveSummarizer
from services.memory.tokens import estimate_message_tokens, estimate_tokens
from services.memory.window import WindowPolicy, group_units, plan_summary, select_window

pytestmark = pytest.mark.unit


def user(text: str, i: int) -> dict[str, Any]:
    return {"id": f"m{i}", "role": "user", "content": text}


def assistant(text: str, i: int) -> dict[str, Any]:
    return {"id": f"m{i}", "role": "assistant", "content": text}


def tool_turn(i: int, n_results: int = 2) -> list[dict[str, Any]]:
    calls = [
        {
            "id": f"call{i}-{k}",
            "type": "function",
            "function": {"name": "lookup", "arguments": f'{{"item": {k}}}'},
        }
        for k in range(n_results)
    ]
    out: list[dict[str, Any]] = [
        {"id": f"m{i}", "role": "assistant", "content": None, "tool_calls": calls}
    ]
    out += [
        {
            "id": f"m{i}-r{k}",
            "role": "tool",
            "tool_call_id": f"call{i}-{k}",
            "content": f"result {k} with quite a lot of detail " * 5,
        }
        for k in range(n_results)
    ]
    return out


def history_with_tools(turns: int) -> list[dict[str, Any]]:
    history: list[dict[str, Any]] = []
    for t in range(turns):
        history.append(user(f"question number {t} about the weather in town {t}", t * 10))
        if t % 2 == 0:
            history += tool_turn(t * 10 + 1)
        history.append(assistant(f"answer number {t}: sunny with light wind", t * 10 + 5))
    return history


def assert_pairing(messages: tuple[Any, ...]) -> None:
    """Every tool result has its call in the window and every call has all results."""
    call_ids = {c["id"] for m in messages for c in m.get("tool_calls") or ()}
    result_ids = {m["tool_call_id"] for m in messages if m["role"] == "tool"}
    assert result_ids == call_ids
    if messages:
        assert messages[0]["role"] != "tool"


def test_everything_fits_no_summary() -> None:
    history = history_with_tools(2)
    window = select_window(history, summary="old summary", policy=WindowPolicy(max_tokens=5000))
    assert window.first_index == 0
    assert window.summary is None
    assert len(window.messages) == len(history)
    assert window.token_estimate == sum(estimate_message_tokens(m) for m in history)
    assert window.message_ids[0] == "m0"


def test_group_units_keeps_tool_results_with_their_call() -> None:
    history = [user("hi", 0), *tool_turn(1, 3), assistant("done", 2)]
    assert group_units(history) == [(0, 1), (1, 5), (5, 6)]


@pytest.mark.parametrize("budget", range(20, 700, 7))
def test_window_respects_budget_and_never_splits_tool_pairs(budget: int) -> None:
    history = history_with_tools(12)
    policy = WindowPolicy(max_tokens=budget, max_messages=1000)
    window = select_window(history, summary="Goal: plan a trip. Key points: rain.", policy=policy)
    assert window.token_estimate <= budget
    assert sum(estimate_message_tokens(m) for m in window.messages) == window.message_tokens
    assert window.messages == tuple(history[window.first_index :])
    assert_pairing(window.messages)
    if window.summary is not None:
        assert window.first_index > 0
        assert window.summary_tokens == estimate_tokens(window.summary)
        assert window.summary_tokens <= budget * policy.max_summary_share


def test_max_messages_is_respected_by_whole_units() -> None:
    history = history_with_tools(10)
    window = select_window(history, policy=WindowPolicy(max_messages=5, max_tokens=100_000))
    assert len(window.messages) <= 5
    assert_pairing(window.messages)


def test_summary_prepended_only_when_history_was_cut() -> None:
    history = history_with_tools(10)
    small = WindowPolicy(max_tokens=200)
    cut = select_window(history, summary="Goal: weather report", policy=small)
    assert cut.first_index > 0
    assert cut.summary == "Goal: weather report"
    without = select_window(history, summary=None, policy=small)
    assert without.summary is None
    assert without.first_index <= cut.first_index  # the summary's tokens cost messages
    blank = select_window(history, summary="   ", policy=small)
    assert blank.summary is None


def test_newest_unit_larger_than_budget_gives_empty_truncated_window() -> None:
    history = [user("hi", 0), *tool_turn(1, 4)]
    window = select_window(history, policy=WindowPolicy(max_tokens=30))
    assert window.messages == ()
    assert window.truncated
    assert window.first_index == len(history)
    assert window.token_estimate <= 30


@pytest.mark.parametrize(
    "bad", [[{"content": "no role"}], [{"role": "robot", "content": "x"}], ["just text"]]
)
def test_malformed_history_is_a_clear_error(bad: list[Any]) -> None:
    with pytest.raises(InvalidHistoryError):
        select_window(bad)


def test_plan_summary_waits_for_the_trigger() -> None:
    history = [user(f"message {i}", i) for i in range(30)]
    policy = WindowPolicy(summary_trigger=10)
    assert plan_summary(history, window_start=9, summarized_through=0, policy=policy) is None
    plan = plan_summary(history, window_start=12, summarized_through=0, policy=policy)
    assert plan is not None
    assert plan.covers_through == 12
    assert [m["id"] for m in plan.to_fold] == [f"m{i}" for i in range(12)]
    assert plan_summary(history, window_start=20, summarized_through=12, policy=policy) is None
    later = plan_summary(history, window_start=25, summarized_through=12, policy=policy)
    assert later is not None
    assert later.to_fold[0]["id"] == "m12"
    with pytest.raises(InvalidHistoryError):
        plan_summary(history, window_start=31, summarized_through=0)


async def test_two_hundred_turns_stay_within_budget_with_a_running_summary() -> None:
    policy = WindowPolicy(max_tokens=800, max_messages=30, summary_trigger=8)
    summarizer = ExtractiveSummarizer(max_chars=900)
    history: list[dict[str, Any]] = []
    summary: str | None = None
    summarized_through = 0
    folds = 0
    for turn in range(200):
        text = (
            "I need a budget travel plan for Lisbon in May."
            if turn == 0
            else f"For day {turn} we decided to visit museum {turn} and must book tickets early."
        )
        history.append(user(text, turn * 3))
        if turn % 5 == 0:
            history += tool_turn(turn * 3 + 1)
        history.append(
            assistant(f"Noted day {turn}; the museum opens at {9 + turn % 3}am.", turn * 3 + 2)
        )
        window = select_window(history, summary=summary, policy=policy)
        assert window.token_estimate <= policy.max_tokens
        assert len(window.messages) <= policy.max_messages
        assert_pairing(window.messages)
        if window.first_index > 0 and summary:
            assert window.summary is not None
        plan = plan_summary(
            history,
            window_start=window.first_index,
            summarized_through=summarized_through,
            policy=policy,
        )
        if plan is not None:
            summary = await summarizer.summarize(summary, list(plan.to_fold))
            assert summarized_through < plan.covers_through
            summarized_through = plan.covers_through
            folds += 1
        assert window.first_index - summarized_through < policy.summary_trigger
    assert folds > 10
    assert summary is not None
    assert summary.startswith("Goal: I need a budget travel plan for Lisbon in May.")
    assert len(summary) <= 900
    final = select_window(history, summary=summary, policy=policy)
    assert final.summary is not None
    assert final.token_estimate <= policy.max_tokens
