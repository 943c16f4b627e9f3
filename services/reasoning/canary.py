"""Which version serves a run: canary rollouts decided per session.

The newest definition of an agent may carry a :class:`~schemas.agents.Rollout`.
A run asking for the agent unpinned goes to the candidate when the session's
bucket (SHA-256 of the session id, read as a number in [0, 1)) is below the
candidate's share, else to the stable version; every replica computes the same
answer from the same topic, and a session keeps its version for as long as the
share does not move past its bucket. Pinned refs (``agent@3``) are never
rerouted, and neither is a paused agent (the newest version answers, and
refuses).
"""

from __future__ import annotations

import hashlib
import logging

from schemas.agents import RolloutState, split_agent_ref
from shared.agent_registry import AgentRegistry

__all__ = ["bucket", "route"]

log = logging.getLogger("mindstream.reasoning.canary")


def bucket(session_id: str) -> float:
    """A stable number in [0, 1) for the session (the same on every replica, every run)."""
    digest = hashlib.sha256(session_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def route(agents: AgentRegistry, ref: str, session_id: str) -> str:
    """The agent ref a new run of ``ref`` in ``session_id`` should use."""
    agent_id, pinned = split_agent_ref(ref)
    if pinned is not None:
        return ref
    newest = agents.get(agent_id)
    if newest is None or newest.rollout is None or newest.paused:
        return ref
    rollout = newest.rollout
    candidate = (rollout.state is RolloutState.ACTIVE
                 and bucket(session_id) < rollout.candidate_share)
    version = rollout.candidate_version if candidate else rollout.stable_version
    chosen = f"{agent_id}@{version}"
    if agents.get(chosen) is None:
        log.warning("rollout of %s names version %d, which this replica does not know; "
                    "using the newest version", agent_id, version)
        return ref
    return chosen
