"""The control plane's MongoDB collections and their indexes, declared as data.

Names end in ``_view`` where the collection is a read model built from
topics: the database is shared with other services (reasoning owns ``runs``,
memory owns ``sessions``), and a view must never be mistaken for the
owner's data.
"""

from __future__ import annotations

from shared.mongo import IndexSpec

__all__ = [
    "AGENTS_VIEW",
    "API_TOKENS",
    "AUDIT_CHAINS",
    "AUDIT_LOG",
    "CONTROL_STATE",
    "INDEXES",
    "RUNS_VIEW",
    "RUN_EVENTS_VIEW",
    "SESSIONS_VIEW",
    "WORKFLOW_DEFINITIONS_VIEW",
    "WORKFLOW_RUNS_VIEW",
]

AUDIT_LOG = "audit_log"
AUDIT_CHAINS = "audit_chains"
API_TOKENS = "api_tokens"
CONTROL_STATE = "control_state"
AGENTS_VIEW = "agents_view"
RUNS_VIEW = "runs_view"
RUN_EVENTS_VIEW = "run_events_view"
SESSIONS_VIEW = "sessions_view"
WORKFLOW_RUNS_VIEW = "workflow_runs_view"
WORKFLOW_DEFINITIONS_VIEW = "workflow_definitions_view"  # _id "<workflow>@<version>"

INDEXES: dict[str, list[IndexSpec]] = {
    # _id is the event_id: the unique index that makes appends idempotent.
    AUDIT_LOG: [
        IndexSpec([("chain", 1), ("seq", 1)], unique=True, name="chain_seq"),
        IndexSpec([("time", -1), ("_id", -1)], name="time"),
        IndexSpec([("actor_id", 1), ("time", -1)], name="actor_time"),
        IndexSpec([("action", 1), ("time", -1)], name="action_time"),
        IndexSpec([("target_id", 1), ("time", -1)], name="target_time"),
    ],
    API_TOKENS: [IndexSpec([("created_at", -1), ("_id", -1)], name="created")],
    AGENTS_VIEW: [IndexSpec([("updated_at", -1), ("_id", -1)], name="updated")],
    RUNS_VIEW: [
        IndexSpec([("created_at", -1), ("_id", -1)], name="created"),
        IndexSpec([("session_id", 1), ("created_at", 1)], name="session_created"),
        IndexSpec([("status", 1), ("created_at", -1)], name="status_created"),
        IndexSpec([("agent_id", 1), ("created_at", -1)], name="agent_created"),
    ],
    RUN_EVENTS_VIEW: [IndexSpec([("run_id", 1), ("seq", 1)], unique=True, name="run_seq")],
    SESSIONS_VIEW: [IndexSpec([("last_at", -1), ("_id", -1)], name="last")],
    WORKFLOW_RUNS_VIEW: [
        IndexSpec([("created_at", -1), ("_id", -1)], name="created"),
        IndexSpec([("status", 1), ("created_at", -1)], name="status_created"),
        IndexSpec([("workflow_id", 1), ("created_at", -1)], name="workflow_created"),
    ],
}
