"""A degraded mode's effect on model calls: no knowledge search, shorter answers.

The control plane sets the mode (:class:`schemas.control.ControlState`); each
replica follows it in a :class:`shared.control_state.ControlView`. Runs keep
flowing: only extras are shed. A knowledge call the model still asks for (from
an earlier turn's tool list) is refused by the planner as an unknown tool, and
the run goes on without it.
"""

from __future__ import annotations

from schemas.knowledge import KNOWLEDGE_TOOL
from services.reasoning.model import ModelRequest
from shared.control_state import ControlView

__all__ = ["shape"]


def shape(request: ModelRequest, view: ControlView) -> ModelRequest:
    """``request`` as the current mode allows it (unchanged in the normal mode)."""
    if not view.degraded:
        return request
    update: dict[str, object] = {}
    if view.knowledge_off and request.tools:
        update["tools"] = [t for t in request.tools
                           if (t.get("function") or {}).get("name") != KNOWLEDGE_TOOL]
    cap = view.max_tokens
    if cap is not None:
        update["max_tokens"] = min(request.max_tokens or cap, cap)
    return request.model_copy(update=update) if update else request
