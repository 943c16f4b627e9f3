"""The control plane's errors and what happens to each.

    ControlPlaneError
    ├── ApiProblem              an HTTP answer (RFC 9457 problem details), never retried
    │   ├── Unauthorized        401: no token, unknown, malformed or revoked
    │   ├── Forbidden           403: the token's scope is too low (audited as refused)
    │   ├── NotFound            404
    │   ├── Conflict            409: paused agent, kill switch, stale version, duplicate
    │   └── NotImplementedYet   501: the owning service offers no way to do it yet
    └── (consumers) shared.errors.PermanentError / ConflictError
        ├── AuditRecordError    PermanentError: an audit event the log cannot store (dead-lettered)
        └── ChainContention     ConflictError: lost the race for the next seq too often (retried)
"""

from __future__ import annotations

from typing import Any

from shared.errors import ConflictError, MindstreamError, PermanentError

__all__ = [
    "ApiProblem",
    "AuditRecordError",
    "ChainContention",
    "Conflict",
    "ControlPlaneError",
    "Forbidden",
    "NotFound",
    "NotImplementedYet",
    "Unauthorized",
]


class ControlPlaneError(MindstreamError):
    """Root of the control plane's own errors."""


class ApiProblem(ControlPlaneError):
    status = 400
    title = "Bad request"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class Unauthorized(ApiProblem):
    status = 401
    title = "Unauthorized"


class Forbidden(ApiProblem):
    status = 403
    title = "Forbidden"


class NotFound(ApiProblem):
    status = 404
    title = "Not found"


class Conflict(ApiProblem):
    status = 409
    title = "Conflict"


class NotImplementedYet(ApiProblem):
    status = 501
    title = "Not implemented"


class AuditRecordError(PermanentError, ControlPlaneError):
    """The event cannot be stored as it is (e.g. a number MongoDB cannot hold)."""


class ChainContention(ConflictError, ControlPlaneError):
    """Other writers kept taking the next seq of the chain; the pipeline retries."""
