"""The workflows service's error tree, and what each error means for the message.

::

    WorkflowsError (shared.errors.MindstreamError)
    └── UnknownWorkflowRun      a result or command names a run this service has no record
                                of although its run id says it should: dead-lettered
                                (PermanentError), a retry cannot create the record

Version conflicts on a workflow run are :class:`shared.errors.ConflictError`
(transient): re-read and retried in the handler, then by the consumer
pipeline. A step that fails (an agent run failed, a tool returned an error, an
approval was rejected) is not an error of the service: the workflow run fails
with that reason, and the message is acknowledged.
"""

from __future__ import annotations

from shared.errors import MindstreamError, PermanentError

__all__ = ["UnknownWorkflowRun", "WorkflowsError"]


class WorkflowsError(MindstreamError):
    """Root of the workflows service's errors."""


class UnknownWorkflowRun(WorkflowsError, PermanentError):
    def __init__(self, workflow_run_id: str) -> None:
        super().__init__(f"no workflow run '{workflow_run_id}'")
        self.workflow_run_id = workflow_run_id
