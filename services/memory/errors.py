"""The memory service's error tree.

Each class says what happens to the Kafka message whose handling raised it::

    MemoryServiceError
    ├── InvalidInputError        dead-lettered: the message itself is wrong
    │   ├── InvalidHistoryError  a stored/received chat history is malformed
    │   └── InvalidDocumentError a knowledge document cannot be chunked
    └── TransientError           retried with backoff, then dead-lettered
        └── ModelUnavailableError a model or embeddings endpoint failed

Model failures during learning and summarising are normally absorbed by a
deterministic fallback (rules, extractive summary), so ``ModelUnavailableError``
only escapes where no fallback makes sense (embeddings for a vector index).

The two branches also derive from :mod:`shared.errors` (``PermanentError`` and
``TransientError``), which is what the shared consumer pipeline acts on.
"""

from __future__ import annotations

from shared import errors as shared_errors

__all__ = [
    "InvalidDocumentError",
    "InvalidHistoryError",
    "InvalidInputError",
    "MemoryServiceError",
    "ModelUnavailableError",
    "TransientError",
]


class MemoryServiceError(Exception):
    """Root of every error the memory service raises on purpose."""

    retryable: bool = False


class InvalidInputError(MemoryServiceError, shared_errors.PermanentError, ValueError):
    """Dead-lettered: retrying the same input would fail the same way."""


class InvalidHistoryError(InvalidInputError):
    """A chat history entry is not a message (no role, wrong types)."""


class InvalidDocumentError(InvalidInputError):
    """A knowledge document is empty or not text."""


class TransientError(MemoryServiceError, shared_errors.TransientError):
    """Retried: the same input may succeed later."""

    retryable = True


class ModelUnavailableError(TransientError):
    """A model or embeddings call failed, timed out, or its breaker is open."""
