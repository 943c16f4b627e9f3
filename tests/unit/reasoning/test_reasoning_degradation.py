"""The operating mode as a replica sees it, and what a degraded mode does to a model call."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from schemas.control import ControlState
from services.reasoning.degradation import shape
from services.reasoning.model import ModelRequest
from shared.control_state import ControlView

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 1, tzinfo=UTC)
TOOLS = [{"type": "function", "function": {"name": n, "parameters": {}}}
         for n in ("calculator", "knowledge_search")]


def state(version: int, **fields: object) -> ControlState:
    return ControlState(version=version, changed_at=NOW, **fields)  # type: ignore[arg-type]


def request(max_tokens: int | None = 1024) -> ModelRequest:
    return ModelRequest(model="m", messages=[{"role": "user", "content": "hi"}], tools=TOOLS,
                        max_tokens=max_tokens)


def test_the_view_keeps_the_newest_version() -> None:
    view = ControlView()
    assert not view.degraded and view.max_tokens is None
    assert view.apply(state(2, degraded=True))
    assert view.degraded and view.knowledge_off and view.learning_off and view.max_tokens == 512
    assert not view.apply(state(1))  # an older state (a replay) changes nothing
    assert view.degraded
    assert view.apply(state(3, degraded=False))
    assert not view.degraded and not view.knowledge_off and not view.learning_off


def test_normal_mode_leaves_requests_alone() -> None:
    view = ControlView()
    r = request()
    assert shape(r, view) is r
    view.apply(state(1, degraded=False, max_tokens=10))
    assert shape(r, view) is r


def test_degraded_mode_drops_knowledge_and_caps_tokens() -> None:
    view = ControlView()
    view.apply(state(1, degraded=True, max_tokens=256))
    shaped = shape(request(), view)
    assert [t["function"]["name"] for t in shaped.tools] == ["calculator"]
    assert shaped.max_tokens == 256
    assert shape(request(max_tokens=100), view).max_tokens == 100  # a smaller cap stays
    assert shape(request(max_tokens=None), view).max_tokens == 256
    keep = ControlView()
    keep.apply(state(1, degraded=True, disable_knowledge=False, max_tokens=None))
    assert shape(request(), keep).tools == TOOLS
    assert shape(request(), keep).max_tokens == 1024
