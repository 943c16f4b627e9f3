"""Bounded label values for things whose names arrive in messages (agents, tools, models).

A Prometheus series per distinct label value is kept forever by the server,
so a label fed from message content must have a ceiling. :class:`BoundedLabel`
admits an explicit allowlist, or, without one, the first ``max_distinct``
values it sees (in practice the busy ones, since those arrive first and
keep arriving); everything else is reported as ``"other"``. Values that
look like ids (uuids, long hex) are refused outright: ids never belong in
labels.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from shared.observability.metrics import OTHER

__all__ = ["BoundedLabel", "agent_label"]

_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}$")
_ID_LIKE = re.compile(
    r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}|[0-9a-f]{16,}",
    re.IGNORECASE,
)


def agent_label(agent_ref: str) -> str:
    """The agent id without its pinned version: ``support@3`` → ``support``."""
    return agent_ref.split("@", 1)[0]


class BoundedLabel:
    """The label values admitted so far; :meth:`value` maps a raw value to its label."""

    def __init__(self, max_distinct: int, allowlist: Iterable[str] = ()) -> None:
        if max_distinct < 1:
            raise ValueError("max_distinct must be at least 1")
        self._allow = frozenset(allowlist)
        self._max = max_distinct
        self._seen: set[str] = set()

    @property
    def admitted(self) -> frozenset[str]:
        return self._allow if self._allow else frozenset(self._seen)

    def value(self, raw: str | None) -> str:
        if not raw or not _SAFE.fullmatch(raw) or _ID_LIKE.search(raw) or raw == OTHER:
            return OTHER
        if self._allow:
            return raw if raw in self._allow else OTHER
        if raw in self._seen:
            return raw
        if len(self._seen) < self._max:
            self._seen.add(raw)
            return raw
        return OTHER
