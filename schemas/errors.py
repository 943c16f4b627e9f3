"""Errors raised when bytes from a topic do not make a valid message.

::

    ValueError
    └── ContractError      body or headers break the contract: dead-letter, never retry
        └── EnvelopeError  a header is missing or invalid (the message names it)

Both mean the same thing to a consumer: the message can never succeed, so
it goes to ``<topic>.dlq`` with ``str(error)`` as the reason.
"""

from __future__ import annotations

__all__ = ["ContractError", "EnvelopeError"]


class ContractError(ValueError):
    """The message violates its published contract; the text says how, without echoing data."""


class EnvelopeError(ContractError):
    """A Kafka header of the envelope is missing or invalid; the text names the header."""
