"""Readable terminal output of run events, shared by `mindstream run` and the demo."""

from __future__ import annotations

import json
from typing import TextIO

from schemas.runs import RunCompleted, RunEvent, RunEventKind

DIM, BOLD, RED, GREEN, CYAN, YELLOW, RESET = (
    "\x1b[2m", "\x1b[1m", "\x1b[31m", "\x1b[32m", "\x1b[36m", "\x1b[33m", "\x1b[0m")


class EventPrinter:
    def __init__(self, out: TextIO, *, quiet: bool = False, color: bool | None = None) -> None:
        self.out = out
        self.quiet = quiet
        self.color = out.isatty() if color is None else color
        self._in_text = False

    def _c(self, code: str, text: str) -> str:
        return f"{code}{text}{RESET}" if self.color else text

    def _line(self, text: str) -> None:
        if self._in_text:
            self.out.write("\n")
            self._in_text = False
        self.out.write(text + "\n")
        self.out.flush()

    def event(self, event: RunEvent) -> None:
        if self.quiet:
            return
        kind = event.kind
        if kind is RunEventKind.MODEL_DELTA:
            self.out.write(event.text or "")
            self.out.flush()
            self._in_text = True
        elif kind is RunEventKind.RUN_STARTED:
            self._line(self._c(DIM, f"▶ run {event.run_id} started ({event.agent_id})"))
        elif kind is RunEventKind.TOOL_REQUESTED:
            args = event.data.get("arguments", [])
            shown = (", ".join(map(str, args)) if isinstance(args, list)
                     else json.dumps(args, ensure_ascii=False))[:200]
            self._line(self._c(CYAN, f"  ⚙ {event.tool}({shown}) ..."))
        elif kind is RunEventKind.TOOL_COMPLETED:
            ok = event.data.get("ok", True)
            mark = self._c(GREEN, "✓") if ok else self._c(RED, "✗")
            detail = str(event.data.get("summary", ""))[:200]
            self._line(f"  {mark} {event.tool} {self._c(DIM, detail)}".rstrip())
        elif kind is RunEventKind.RUN_AWAITING_APPROVAL:
            self._line(self._c(YELLOW, f"  ⏸ {event.tool} needs approval (call {event.call_id})"))
        elif kind is RunEventKind.RUN_CHILD_STARTED:
            member = event.data.get("member", "a member")
            self._line(self._c(CYAN, f"  ↳ delegated to {member} (child run {event.child_run_id})"))
        elif kind is RunEventKind.RUN_CHILD_COMPLETED:
            self._line(self._c(CYAN, f"  ↳ child run {event.child_run_id} answered"))
        elif kind is RunEventKind.GUARDRAIL_TRIGGERED:
            self._line(self._c(YELLOW, f"  ⚠ guardrail: {event.reason}"))
        elif kind is RunEventKind.MODEL_COMPLETED and self._in_text:
            self._line("")

    def final(self, result: RunCompleted, seconds: float) -> None:
        if self.quiet:
            self._line(result.output or result.error or "")
            return
        usage = result.usage
        status = result.status.value
        colour = GREEN if status == "completed" else RED
        summary = (f"■ {status} in {seconds * 1000:.0f} ms · {result.metrics.model_calls} model call(s), "
                   f"{result.metrics.tool_calls} tool call(s) · tokens {usage.prompt_tokens} in / "
                   f"{usage.completion_tokens} out")
        if result.error:
            summary += f" · {result.error}"
        self._line(self._c(colour, summary))
