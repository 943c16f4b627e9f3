"""Choose which part of a session's history goes into the next run's context.

Messages are OpenAI-style chat dicts (``role``, ``content``, optional
``tool_calls``, ``tool_call_id``, ``id``). The window is the newest messages
that fit both a message count and a token budget, with two guarantees:

* an assistant message that requested tools and the ``tool`` messages that
  answer it are kept or dropped together — a model API rejects a tool result
  without its call, and a call without its result confuses the model;
* when older history was cut and a running summary exists, the summary is
  prepended and its tokens count against the same budget.

The window never exceeds its budget. If even the newest unit does not fit
(a huge tool result, say) the window is empty and ``truncated`` is set: the
caller learns of it from the ``included`` record rather than a silent overrun.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from services.memory.errors import InvalidHistoryError
from services.memory.tokens import estimate_message_tokens, estimate_tokens, truncate_to_tokens

__all__ = [
    "SummaryPlan",
    "Window",
    "WindowPolicy",
    "group_units",
    "plan_summary",
    "select_window",
]

_ROLES = frozenset({"system", "user", "assistant", "tool", "developer"})


@dataclass(frozen=True)
class WindowPolicy:
    """Limits of the history window and when a running summary is refreshed.

    ``summary_trigger`` is how many messages must have fallen out of the window
    since the summary last covered them before a new summary is due: summarising
    after every turn would cost a model call per run for little gain.
    ``max_summary_share`` caps the part of the budget a summary may take.
    """

    max_messages: int = 40
    max_tokens: int = 3000
    summary_trigger: int = 10
    max_summary_share: float = 0.3

    def __post_init__(self) -> None:
        if self.max_messages < 1 or self.max_tokens < 1:
            raise ValueError("max_messages and max_tokens must be at least 1")
        if self.summary_trigger < 1:
            raise ValueError("summary_trigger must be at least 1")
        if not 0.0 < self.max_summary_share < 1.0:
            raise ValueError("max_summary_share must be between 0 and 1")


@dataclass(frozen=True)
class Window:
    """The chosen history and what it cost, for the run's ``included`` record.

    ``first_index`` is the position in the session's history of the first
    message kept (``len(history)`` when none were kept).
    """

    messages: tuple[Mapping[str, Any], ...]
    summary: str | None
    first_index: int
    total_messages: int
    message_tokens: int
    summary_tokens: int
    truncated: bool

    @property
    def token_estimate(self) -> int:
        return self.message_tokens + self.summary_tokens

    @property
    def dropped_messages(self) -> int:
        return self.first_index

    @property
    def message_ids(self) -> list[str]:
        return [str(m["id"]) for m in self.messages if m.get("id") is not None]


@dataclass(frozen=True)
class SummaryPlan:
    """Which messages to fold into the running summary next.

    After summarising ``to_fold``, the session's summary covers the first
    ``covers_through`` messages of its history.
    """

    to_fold: tuple[Mapping[str, Any], ...]
    covers_through: int


def _validate(messages: Sequence[Mapping[str, Any]]) -> None:
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise InvalidHistoryError(f"history[{i}] is {type(message).__name__}, not a message")
        role = message.get("role")
        if role not in _ROLES:
            raise InvalidHistoryError(f"history[{i}] has invalid role {role!r}")


def group_units(messages: Sequence[Mapping[str, Any]]) -> list[tuple[int, int]]:
    """Split history into atomic ``(start, end)`` slices.

    A ``tool`` message always joins the unit before it, so an assistant tool
    call and all its results form one unit; every other message starts a unit.
    """
    _validate(messages)
    units: list[tuple[int, int]] = []
    for i, message in enumerate(messages):
        if message.get("role") == "tool" and units:
            start, _ = units[-1]
            units[-1] = (start, i + 1)
        else:
            units.append((i, i + 1))
    return units


def _fit(
    messages: Sequence[Mapping[str, Any]],
    units: list[tuple[int, int]],
    costs: list[int],
    max_messages: int,
    max_tokens: int,
) -> tuple[int, int]:
    """Walk units newest first; return (first kept index, tokens used)."""
    first = len(messages)
    used = 0
    for start, end in reversed(units):
        cost = sum(costs[start:end])
        if (len(messages) - start) > max_messages or used + cost > max_tokens:
            break
        first = start
        used += cost
    return first, used


def select_window(
    history: Sequence[Mapping[str, Any]],
    *,
    summary: str | None = None,
    policy: WindowPolicy | None = None,
    max_tokens: int | None = None,
    older_omitted: bool = False,
) -> Window:
    """The newest whole units of ``history`` within the policy's limits.

    ``max_tokens`` overrides the policy's budget when the caller has less room
    (the context assembler gives history what memories and knowledge left).
    ``older_omitted`` says ``history`` is only the newest part of the session
    (the store loads the tail the summary does not cover), so the summary is
    due even when every message passed fits.
    """
    policy = policy or WindowPolicy()
    budget = policy.max_tokens if max_tokens is None else min(max_tokens, policy.max_tokens)
    budget = max(budget, 0)
    units = group_units(history)
    costs = [estimate_message_tokens(m) for m in history]

    first, used = _fit(history, units, costs, policy.max_messages, budget)
    cut = first > 0 or older_omitted
    kept_summary: str | None = None
    summary_tokens = 0
    if cut and summary and summary.strip():
        kept_summary = truncate_to_tokens(summary.strip(), int(budget * policy.max_summary_share))
        summary_tokens = estimate_tokens(kept_summary) if kept_summary else 0
        if kept_summary:
            first, used = _fit(history, units, costs, policy.max_messages, budget - summary_tokens)
        else:
            kept_summary = None
    return Window(
        messages=tuple(history[first:]),
        summary=kept_summary,
        first_index=first,
        total_messages=len(history),
        message_tokens=used,
        summary_tokens=summary_tokens,
        truncated=first > 0 and first == len(history),
    )


def plan_summary(
    history: Sequence[Mapping[str, Any]],
    *,
    window_start: int,
    summarized_through: int,
    policy: WindowPolicy | None = None,
) -> SummaryPlan | None:
    """A summary refresh, if enough history fell out of the window since the last.

    ``window_start`` is ``Window.first_index`` (or ``Included.history_first_index``);
    ``summarized_through`` is how many leading messages the current summary
    already covers (0 when there is none). The plan folds exactly the messages
    between that point and the window's start, so each message is summarised
    once; between refreshes fewer than ``summary_trigger`` messages are in
    neither the summary nor the window.
    """
    policy = policy or WindowPolicy()
    if not 0 <= window_start <= len(history):
        raise InvalidHistoryError(
            f"window_start={window_start} is outside a history of {len(history)}"
        )
    if not 0 <= summarized_through <= len(history):
        raise InvalidHistoryError(
            f"summarized_through={summarized_through} is outside a history of {len(history)}"
        )
    if window_start - summarized_through < policy.summary_trigger:
        return None
    return SummaryPlan(
        to_fold=tuple(history[summarized_through:window_start]),
        covers_through=window_start,
    )
