"""The tool service's error tree, and the codes a model sees in a failed result.

A failed tool call is an *answer*, not a broken message: the executor turns
every error below into a ``ToolResult`` with ``ok=false`` and an error code,
the ``tools.calls`` message is acknowledged, and the run goes on (the model
reads the error and decides). Nothing here is dead-lettered; only
:class:`RegistryError` stops anything, and it stops the service at start.

    ToolError                      root; never escapes Executor.execute
    ├── ToolNotFoundError          unknown_tool       not retried
    ├── ToolNotAllowedError        not_allowed        not retried (least agency)
    ├── ApprovalRequiredError      approval_required  not retried
    ├── InvalidArgumentsError      invalid_arguments  not retried; lists the fields
    ├── ToolTimeoutError           timeout            not retried (deadline spent)
    ├── TransientToolError         transient          retried with backoff until
    │                                                 attempts or deadline run out
    ├── ToolFailedError            tool_failed        not retried; the tool refused
    │                                                 the input with a reason
    ├── InvalidResultError         invalid_result     not retried; not JSON-able
    └── SandboxError               (subprocess tools)
        ├── SandboxCrashedError    sandbox_crashed    not retried
        └── ResourceLimitError     resource_limit     not retried
    RegistryError                  configuration error at start (bad tool
                                   definition, duplicate name, failed import);
                                   the service refuses to start

Two codes have no class of their own: ``circuit_open`` comes from
:class:`shared.resilience.CircuitOpenError`, and ``internal_error`` is any
other exception a tool raised (a bug in the tool, reported with its type).

Tool authors raise :class:`ToolFailedError` for "your input is wrong, here is
why" and :class:`TransientToolError` for "try again later"; everything else
is theirs to let propagate.
"""

from __future__ import annotations

import enum

__all__ = [
    "ApprovalRequiredError",
    "ErrorCode",
    "InvalidArgumentsError",
    "InvalidResultError",
    "RegistryError",
    "ResourceLimitError",
    "SandboxCrashedError",
    "SandboxError",
    "ToolError",
    "ToolFailedError",
    "ToolNotAllowedError",
    "ToolNotFoundError",
    "ToolTimeoutError",
    "TransientToolError",
]


class ErrorCode(enum.StrEnum):
    """The ``error_code`` of a failed outcome; part of the ToolResult contract."""

    UNKNOWN_TOOL = "unknown_tool"
    NOT_ALLOWED = "not_allowed"
    APPROVAL_REQUIRED = "approval_required"
    INVALID_ARGUMENTS = "invalid_arguments"
    TIMEOUT = "timeout"
    TRANSIENT = "transient"
    TOOL_FAILED = "tool_failed"
    INVALID_RESULT = "invalid_result"
    SANDBOX_CRASHED = "sandbox_crashed"
    RESOURCE_LIMIT = "resource_limit"
    CIRCUIT_OPEN = "circuit_open"
    INTERNAL_ERROR = "internal_error"


class ToolError(Exception):
    """Root of the errors a tool call can end with."""

    code: ErrorCode = ErrorCode.INTERNAL_ERROR
    retryable: bool = False
    counts_against_breaker: bool = False


class ToolNotFoundError(ToolError):
    code = ErrorCode.UNKNOWN_TOOL


class ToolNotAllowedError(ToolError):
    code = ErrorCode.NOT_ALLOWED


class ApprovalRequiredError(ToolError):
    code = ErrorCode.APPROVAL_REQUIRED


class InvalidArgumentsError(ToolError):
    """The arguments did not match the tool's parameters.

    ``fields`` names each offending argument, so the model can fix exactly those.
    """

    code = ErrorCode.INVALID_ARGUMENTS

    def __init__(self, message: str, fields: list[str] | None = None) -> None:
        super().__init__(message)
        self.fields = fields or []


class ToolTimeoutError(ToolError):
    code = ErrorCode.TIMEOUT
    counts_against_breaker = True


class TransientToolError(ToolError):
    """Raise from a tool when the same call may well succeed if tried again."""

    code = ErrorCode.TRANSIENT
    retryable = True
    counts_against_breaker = True


class ToolFailedError(ToolError):
    """Raise from a tool to refuse an input with a reason the model can act on."""

    code = ErrorCode.TOOL_FAILED


class InvalidResultError(ToolError):
    code = ErrorCode.INVALID_RESULT


class SandboxError(ToolError):
    counts_against_breaker = True


class SandboxCrashedError(SandboxError):
    code = ErrorCode.SANDBOX_CRASHED


class ResourceLimitError(SandboxError):
    code = ErrorCode.RESOURCE_LIMIT


class RegistryError(Exception):
    """A tool definition or tool module is unusable; raised at start, not per call."""
