"""The reasoning service's error tree, and what each error means for the message.

::

    ReasoningError                  root; ``disposition`` says what happens to the message
    ├── ModelError                  a model call failed: the run fails with this reason (acked)
    │   ├── ModelUnavailableError   429/5xx/connection/timeout outlasted the retries or the deadline
    │   │   └── ModelCircuitOpenError   the endpoint's breaker is open: failed fast, no call made
    │   ├── ModelRequestError       the endpoint rejected the request (4xx other than 408/409/429)
    │   ├── ModelProtocolError      the answer broke the protocol (tool arguments not JSON, ...)
    │   └── StructuredOutputError   the final content does not satisfy the requested JSON schema
    └── IllegalTransition           an event that the run's state does not allow: dead-lettered,
                                    it is a bug or an out-of-order message, never retried

Model errors do not retry the Kafka message: the model client already retried what was
worth retrying, and a redelivery would only repeat the same call. The run fails with a
clear ``reason`` (architecture rule 6) and the consumer moves on.
"""

from __future__ import annotations

import enum

from shared.resilience import CircuitOpenError

__all__ = [
    "Disposition",
    "IllegalTransition",
    "ModelCircuitOpenError",
    "ModelError",
    "ModelProtocolError",
    "ModelRequestError",
    "ModelUnavailableError",
    "ReasoningError",
    "StructuredOutputError",
]


class Disposition(enum.StrEnum):
    RETRY = "retry"  # transient: redeliver the message after backoff
    DEAD_LETTER = "dead_letter"  # the message cannot be processed: park it with the reason
    FAIL_RUN = "fail_run"  # the message is fine; the run fails with the error as reason


class ReasoningError(Exception):
    disposition: Disposition = Disposition.DEAD_LETTER

    @property
    def reason(self) -> str:
        """One line for run.failed events and dead-letter headers."""
        return str(self)


class ModelError(ReasoningError):
    disposition = Disposition.FAIL_RUN


class ModelUnavailableError(ModelError):
    def __init__(self, endpoint: str, detail: str, attempts: int = 0) -> None:
        tries = f" after {attempts} attempt(s)" if attempts else ""
        super().__init__(f"model endpoint {endpoint} unavailable{tries}: {detail}")
        self.endpoint = endpoint
        self.attempts = attempts


class ModelCircuitOpenError(ModelUnavailableError, CircuitOpenError):
    """Also a :class:`shared.resilience.CircuitOpenError`, so generic breaker handling works."""

    def __init__(self, endpoint: str, retry_in: float) -> None:
        # Not super().__init__: past ModelError the MRO reaches CircuitOpenError's signature.
        Exception.__init__(
            self,
            f"model endpoint {endpoint} unavailable: circuit breaker open, "
            f"retry in {max(retry_in, 0.0):.1f}s",
        )
        self.endpoint = endpoint
        self.attempts = 0
        self.name = endpoint
        self.retry_in = retry_in


class ModelRequestError(ModelError):
    def __init__(self, endpoint: str, status: int, detail: str) -> None:
        super().__init__(f"model endpoint {endpoint} rejected the request ({status}): {detail}")
        self.endpoint = endpoint
        self.status = status


class ModelProtocolError(ModelError):
    def __init__(self, detail: str, tool: str | None = None) -> None:
        prefix = f"tool call '{tool}': " if tool else ""
        super().__init__(f"model protocol error: {prefix}{detail}")
        self.tool = tool


class StructuredOutputError(ModelError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("model output does not match the schema: " + "; ".join(problems[:5]))
        self.problems = problems


class IllegalTransition(ReasoningError):
    disposition = Disposition.DEAD_LETTER

    def __init__(self, status: str, event: str, detail: str = "") -> None:
        extra = f" ({detail})" if detail else ""
        super().__init__(f"illegal transition: event '{event}' in status '{status}'{extra}")
        self.status = status
        self.event = event
