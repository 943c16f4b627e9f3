"""The messages that start and steer a workflow run, built one way for every caller.

The Python client (and through it the CLI) and the control plane's API all
start workflow runs and send them commands. Building the messages here gives
them one id shape (``wr-<hex>`` for runs, ``cmd-<hex>`` for commands) and one
place where a request's defaults live; the callers differ only in who the
actor is and where they publish.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from schemas.common import Actor
from schemas.workflows import WorkflowCommand, WorkflowCommandKind, WorkflowRequested

__all__ = [
    "build_workflow_command",
    "build_workflow_request",
    "new_command_id",
    "new_workflow_run_id",
]


def new_workflow_run_id() -> str:
    return f"wr-{uuid.uuid4().hex}"


def new_command_id() -> str:
    return f"cmd-{uuid.uuid4().hex}"


def build_workflow_request(
    workflow: str,
    text: str,
    *,
    user: str,
    workflow_run_id: str | None = None,
    session: str | None = None,
    metadata: Mapping[str, str] | None = None,
    reply_topic: str | None = None,
    requested_at: datetime | None = None,
) -> WorkflowRequested:
    """A request to run ``workflow`` (``name`` or pinned ``name@2``) on ``text``.

    ``workflow_run_id`` is the idempotency key: a repeat with the same id is the
    same run. Invalid values raise pydantic's ``ValidationError``.
    """
    when: dict[str, Any] = {} if requested_at is None else {"requested_at": requested_at}
    return WorkflowRequested(
        workflow_run_id=workflow_run_id or new_workflow_run_id(), workflow_id=workflow,
        input=text, user_id=user, session_id=session, reply_topic=reply_topic,
        metadata=dict(metadata or {}), **when)


def build_workflow_command(
    workflow_run_id: str,
    kind: WorkflowCommandKind,
    actor: Actor,
    *,
    step: str | None = None,
    reason: str | None = None,
    issued_at: datetime | None = None,
) -> WorkflowCommand:
    """Cancel a run, or approve/reject its waiting approval step (``step`` picks one)."""
    when: dict[str, Any] = {} if issued_at is None else {"issued_at": issued_at}
    return WorkflowCommand(
        command_id=new_command_id(), workflow_run_id=workflow_run_id, command=kind, step=step,
        actor=actor, reason=reason, **when)
