"""From an executor outcome to the ``ToolResult`` contract.

The executor speaks in fine-grained codes (:class:`~services.tools.errors.ErrorCode`);
the published contract has a coarser set (:class:`~schemas.tools.ToolErrorCode`).
The fine code is kept at the front of the message (``[sandbox_crashed] ...``)
whenever the coarse one loses it, so the model and an operator still see it.
"""

from __future__ import annotations

import json
from typing import Any

from schemas.tools import ContentRef, ToolCall, ToolError, ToolErrorCode, ToolResult
from services.tools.errors import ErrorCode
from services.tools.executor import ExecutionOutcome

__all__ = [
    "INTERRUPTED",
    "REFUSED_CODES",
    "contract_code",
    "encode_content",
    "error_result",
    "result_from_outcome",
]

INTERRUPTED = "interrupted"
"""Outcome label of a call found started but unfinished, failed by its recovery policy."""

REFUSED_CODES = frozenset({ErrorCode.NOT_ALLOWED, ErrorCode.APPROVAL_REQUIRED,
                           ErrorCode.UNKNOWN_TOOL})  # fmt: skip
"""Policy said no before anything ran: audited as ``tool.refused``."""

_CONTRACT: dict[str, ToolErrorCode] = {
    ErrorCode.UNKNOWN_TOOL: ToolErrorCode.UNKNOWN_TOOL,
    ErrorCode.NOT_ALLOWED: ToolErrorCode.NOT_ALLOWED,
    ErrorCode.APPROVAL_REQUIRED: ToolErrorCode.REJECTED,
    ErrorCode.INVALID_ARGUMENTS: ToolErrorCode.INVALID_ARGUMENTS,
    ErrorCode.TIMEOUT: ToolErrorCode.TIMEOUT,
    ErrorCode.CIRCUIT_OPEN: ToolErrorCode.UNAVAILABLE,
}
_MESSAGE_LIMIT = 1024  # ShortText


def contract_code(code: str) -> ToolErrorCode:
    return _CONTRACT.get(code, ToolErrorCode.FAILED)


def encode_content(content: Any) -> bytes:
    """The JSON bytes whose size decides inline versus by reference: compact and
    ASCII-escaped, exactly as the ToolResult contract measures inline content."""
    return json.dumps(content, separators=(",", ":")).encode()


def error_result(call: ToolCall, code: str, message: str, duration_ms: float = 0) -> ToolResult:
    coarse = contract_code(code)
    text = message if coarse.value == code else f"[{code}] {message}"
    if len(text) > _MESSAGE_LIMIT:
        text = text[: _MESSAGE_LIMIT - 1] + "…"
    return ToolResult(
        call_id=call.call_id, run_id=call.run_id, session_id=call.session_id, tool=call.tool,
        ok=False, error=ToolError(code=coarse, message=text),
        duration_ms=max(0, round(duration_ms)),
    )  # fmt: skip


def result_from_outcome(
    call: ToolCall, outcome: ExecutionOutcome, content_ref: ContentRef | None = None
) -> ToolResult:
    if not outcome.ok:
        return error_result(
            call, outcome.error_code or ErrorCode.INTERNAL_ERROR,
            outcome.error_message or "the tool failed", outcome.duration_ms,
        )  # fmt: skip
    return ToolResult(
        call_id=call.call_id, run_id=call.run_id, session_id=call.session_id, tool=call.tool,
        ok=True, content=None if content_ref is not None else outcome.content,
        content_ref=content_ref, duration_ms=max(0, round(outcome.duration_ms)),
    )  # fmt: skip
