"""In-memory stand-ins for the run store and the publisher, for handler unit tests.

The store keeps the same contract as :class:`services.reasoning.store.RunStore`
(versioned writes raise ConflictError, outbox stored with the state), so the
handlers' persist-then-publish logic is exercised without MongoDB.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from schemas.base import Message
from schemas.envelope import Envelope
from schemas.topics import TopicSpec
from services.reasoning.state import RunState, RunStatus
from services.reasoning.store import OutboxItem, StoredRun, Sweepable
from shared.errors import ConflictError
from shared.kafka.consumer import Delivery
from shared.kafka.publisher import Outgoing


class MemoryRunStore:
    def __init__(self) -> None:
        self.docs: dict[str, tuple[str, int, list[OutboxItem], datetime]] = {}
        self.writes = 0
        self.clears = 0  # clear_outbox calls: a round trip each (two on FerretDB)
        self.gets = 0

    async def get(self, run_id: str) -> StoredRun | None:
        self.gets += 1
        found = self.docs.get(run_id)
        if found is None:
            return None
        state = RunState.model_validate_json(found[0])
        state.version = found[1]
        return StoredRun(state, list(found[2]))

    async def create(self, state: RunState, outbox: list[OutboxItem]) -> bool:
        if state.run_id in self.docs:
            return False
        state.version = max(state.version, 1)
        self.docs[state.run_id] = (state.model_dump_json(), state.version, list(outbox),
                                   state.updated_at)
        self.writes += 1
        return True

    async def save(self, expected_version: int, state: RunState,
                   outbox: list[OutboxItem] | None) -> RunState:
        current = self.docs.get(state.run_id)
        if current is None or current[1] != expected_version:
            raise ConflictError(f"runs/{state.run_id}: version {expected_version} is stale")
        state.version = expected_version + 1
        kept = current[2] if outbox is None else list(outbox)
        self.docs[state.run_id] = (state.model_dump_json(), state.version, kept,
                                   state.updated_at)
        self.writes += 1
        return state

    async def clear_outbox(self, run_id: str, version: int) -> None:
        self.clears += 1
        body, v, _outbox, at = self.docs[run_id]
        if v == version:
            self.docs[run_id] = (body, v, [], at)

    async def due(self, now: datetime, statuses: list[RunStatus], limit: int = 100) -> list[str]:
        out = []
        for run_id in self.docs:
            stored = await self.get(run_id)
            assert stored is not None
            s = stored.state
            if s.status in statuses and s.deadline is not None and s.deadline < now:
                out.append(run_id)
        return out[:limit]

    async def extend_claim(self, run_id: str, version: int, until: datetime) -> bool:
        body, v, outbox, at = self.docs[run_id]
        state = RunState.model_validate_json(body)
        if v != version or state.model_claim is None:
            return False
        state.model_claim.until = until
        self.docs[run_id] = (state.model_dump_json(), v, outbox, at)
        return True

    async def stalled(self, now: datetime, limit: int = 100) -> list[str]:
        out = []
        for run_id in self.docs:
            stored = await self.get(run_id)
            assert stored is not None
            s, claim = stored.state, stored.state.model_claim
            if s.status is RunStatus.RUNNING and claim is not None and claim.until < now:
                out.append(run_id)
        return out[:limit]

    async def unpublished(self, before: datetime, limit: int = 100) -> list[str]:
        return [k for k, (_b, _v, box, at) in self.docs.items() if box and at < before][:limit]

    async def sweepable(self, now: datetime, statuses: list[RunStatus], unpublished_before: datetime,
                        limit: int = 100) -> Sweepable:
        return Sweepable(await self.due(now, statuses, limit), await self.stalled(now, limit),
                         await self.unpublished(unpublished_before, limit))

    def outbox(self, run_id: str) -> list[OutboxItem]:
        return list(self.docs[run_id][2])


@dataclass
class Sent:
    topic: str
    message: Any
    message_id: str | None
    physical_topic: str | None


@dataclass
class RecordingPublisher:
    sent: list[Sent] = field(default_factory=list)
    fail_after: int | None = None  # raise once this many messages have been sent

    async def publish(self, spec: TopicSpec, message: Message, *, caused_by: Envelope | None = None,
                      message_id: str | None = None, correlation_id: str | None = None,
                      physical_topic: str | None = None) -> Envelope:
        if self.fail_after is not None and len(self.sent) >= self.fail_after:
            self.fail_after = None
            raise ConnectionError("broker unreachable (test)")
        self.sent.append(Sent(spec.name, message, message_id, physical_topic))
        return Envelope.new(message, source="test", message_id=message_id, caused_by=caused_by)

    async def publish_many(self, batch: list[Outgoing]) -> list[BaseException | None]:
        """Like the real one, failures are returned, not raised; once a send fails (the
        broker is unreachable) the rest of the batch fails with it."""
        results: list[BaseException | None] = []
        for o in batch:
            failed = next((r for r in results if r is not None), None)
            if failed is not None:
                results.append(failed)
                continue
            try:
                await self.publish(o.spec, o.message, caused_by=o.caused_by, message_id=o.message_id,
                                   correlation_id=o.correlation_id, physical_topic=o.physical_topic)
                results.append(None)
            except Exception as exc:
                results.append(exc)
        return results

    def of(self, cls: type[Any], run_id: str | None = None) -> list[Any]:
        return [s.message for s in self.sent if isinstance(s.message, cls)
                and (run_id is None or getattr(s.message, "run_id", None) == run_id)]


def delivery(message: Message, topic: str = "t") -> Delivery[Any]:
    return Delivery(message, Envelope.new(message, source="test"), topic, 0, 0)


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now
