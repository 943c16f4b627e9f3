"""The system-wide operating state (``mindstream.control.v1``), as each replica sees it.

Services follow the compacted topic without a consumer group (every replica
reads every change) and ask this view what a degraded mode switches off. A
replica that starts reads the topic from its beginning, so it learns the
current mode within moments; until then it runs in the normal mode.
"""

from __future__ import annotations

import logging

from schemas.control import ControlState
from shared.kafka.consumer import Delivery

__all__ = ["ControlView"]

log = logging.getLogger("mindstream.control")


class ControlView:
    def __init__(self) -> None:
        self.state: ControlState | None = None

    def apply(self, state: ControlState) -> bool:
        """Take ``state`` unless a newer version is known; True if it changed the view."""
        if self.state is not None and state.version <= self.state.version:
            return False
        self.state = state
        log.warning("operating mode: %s (version %d%s)", "degraded" if state.degraded else "normal",
                    state.version, f": {state.reason}" if state.reason else "")
        return True

    async def handle(self, delivery: Delivery[ControlState]) -> None:
        self.apply(delivery.message)

    @property
    def degraded(self) -> bool:
        return self.state is not None and self.state.degraded

    @property
    def knowledge_off(self) -> bool:
        return self.degraded and self.state is not None and self.state.disable_knowledge

    @property
    def learning_off(self) -> bool:
        return self.degraded and self.state is not None and self.state.disable_memory_learning

    @property
    def max_tokens(self) -> int | None:
        """The cap on each model answer while degraded; None when there is none."""
        return self.state.max_tokens if self.degraded and self.state is not None else None
