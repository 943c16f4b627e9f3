"""The root of every service's error tree, and what each branch does to a message.

    MindstreamError
    ├── PermanentError      dead-lettered at once: retrying cannot help
    │   └── (schemas.errors.ContractError is treated the same: invalid input)
    └── TransientError      retried with backoff and jitter, then dead-lettered
        └── ConflictError   optimistic-concurrency conflict: re-read and retry

Anything else raised by a handler is treated as transient (an unknown error
is more often a hiccup than a bug; the bounded retries then dead-letter it
with its traceback's last line, so nothing is lost either way).
"""

from __future__ import annotations

__all__ = ["ConflictError", "MindstreamError", "PermanentError", "TransientError"]


class MindstreamError(Exception):
    """Root of all mindstream errors."""


class PermanentError(MindstreamError):
    """The message can never be processed; dead-letter it with this reason."""


class TransientError(MindstreamError):
    """A dependency hiccup; retry the message later."""


class ConflictError(TransientError):
    """Another writer changed the document first (its version moved)."""
