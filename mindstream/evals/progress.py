"""A plain terminal progress line: redrawn in place on a terminal, sparse lines otherwise."""

from __future__ import annotations

from typing import TextIO

__all__ = ["Progress"]


class Progress:
    def __init__(self, total: int, stream: TextIO, *, width: int = 30, label: str = "eval") -> None:
        self.total, self.done, self.failed = total, 0, 0
        self._stream, self._width, self._label = stream, width, label
        self._tty = bool(getattr(stream, "isatty", lambda: False)())
        self._last_tenth = -1

    def advance(self, *, passed: bool) -> None:
        self.done += 1
        self.failed += 0 if passed else 1
        if self._tty:
            self._stream.write("\r" + self.line())
            if self.done == self.total:
                self._stream.write("\n")
            self._stream.flush()
            return
        tenth = self.done * 10 // max(1, self.total)
        if tenth != self._last_tenth or self.done == self.total:
            self._last_tenth = tenth
            self._stream.write(self.line() + "\n")
            self._stream.flush()

    def line(self) -> str:
        filled = self._width * self.done // max(1, self.total)
        bar = "#" * filled + "." * (self._width - filled)
        return (f"{self._label} [{bar}] {self.done}/{self.total}  "
                f"passed {self.done - self.failed}  failed {self.failed}")
