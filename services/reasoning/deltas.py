"""Batching of streamed model text into ``model.delta`` events.

One event per token would multiply Kafka traffic by the answer's length; one
event per answer would defeat streaming. Text is flushed when the buffer
reaches ``max_chars`` or when ``max_ms`` have passed since its first
character, and once more at the end. Deltas are not persisted: a replayed
model call simply streams again.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

__all__ = ["DeltaBatcher"]


class DeltaBatcher:
    def __init__(
        self,
        emit: Callable[[int, str], Awaitable[None]],
        *,
        start_seq: int,
        max_ms: float = 50.0,
        max_chars: int = 32,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._emit, self._clock = emit, clock
        self._max_s, self._max_chars = max_ms / 1000, max_chars
        self._buffer: list[str] = []
        self._size = 0
        self._since: float | None = None
        self.next_seq = start_seq
        self.flushes = 0

    async def add(self, text: str) -> None:
        if not text:
            return
        if self._since is None:
            self._since = self._clock()
        self._buffer.append(text)
        self._size += len(text)
        if self._size >= self._max_chars or self._clock() - self._since >= self._max_s:
            await self.flush()

    async def flush(self) -> None:
        if not self._buffer:
            return
        text = "".join(self._buffer)
        self._buffer, self._size, self._since = [], 0, None
        seq = self.next_seq
        self.next_seq += 1
        self.flushes += 1
        await self._emit(seq, text)
