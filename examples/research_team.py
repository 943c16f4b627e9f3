"""A team at work: the `team` agent (coordinate mode) delegates research to `researcher`.

What it shows: a leader agent splits the work. It delegates a question to the
`researcher` member -- a child run of its own, which searches the knowledge
base with knowledge_search -- and does arithmetic with the calculator, both in
parallel, then answers. The leader's events come from ``client.stream()``; the
child run lives in another session (so on another partition), and this example
reads its events straight from ``mindstream.runs.events.v1`` with a plain
consumer to show what the researcher did.

Run it while mindstream is up (`make demo`, `mindstream demo --keep`, or any
deployment whose knowledge base holds mindstream/demo/knowledge/):

    python examples/research_team.py

Exits 0 when the team delegated to the researcher, the researcher searched the
knowledge base, and the team answered; 1 with a reason otherwise.
"""

from __future__ import annotations

import argparse
import sys
import uuid

from _common import EventLine, ExampleFailed, run_example
from aiokafka import AIOKafkaConsumer

from mindstream.client import MindstreamClient
from schemas.codec import decode
from schemas.envelope import Envelope
from schemas.errors import ContractError
from schemas.runs import RunCompleted, RunEvent, RunEventKind
from schemas.topics import RUNS_EVENTS
from shared.settings import KafkaSettings

QUESTION = ("Plan a dinner for 6: how much pasta should I buy, and which wine goes with "
            "mushroom risotto?")


class AllRunEvents:
    """Every partition of runs.events, from the moment :meth:`start` returns."""

    def __init__(self, settings: KafkaSettings) -> None:
        self.topic = RUNS_EVENTS.physical(settings.topic_prefix)
        # Subscribed without a consumer group: this reader gets every partition to itself.
        self.consumer = AIOKafkaConsumer(self.topic, bootstrap_servers=settings.bootstrap_servers,
                                         group_id=None, enable_auto_commit=False,
                                         auto_offset_reset="latest")

    async def start(self) -> None:
        await self.consumer.start()
        if not self.consumer.assignment():
            raise ExampleFailed(f"topic {self.topic} not found")
        for tp in self.consumer.assignment():
            await self.consumer.position(tp)  # fix the start now, before the request is sent

    async def read_up_to_now(self) -> list[RunEvent]:
        """Everything published since :meth:`start`, up to the current end of each partition."""
        partitions = list(self.consumer.assignment())
        ends = await self.consumer.end_offsets(partitions)
        events: list[RunEvent] = []
        while [tp for tp in partitions if await self.consumer.position(tp) < ends[tp]]:
            for records in (await self.consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    try:
                        events.append(decode(RunEvent, record.value,
                                             Envelope.from_headers(record.headers)))
                    except ContractError:
                        continue
        return events

    async def stop(self) -> None:
        await self.consumer.stop()


async def main(timeout: float) -> None:
    show = EventLine()
    children: dict[str, str] = {}  # child run id -> member
    result: RunCompleted | None = None
    everything = AllRunEvents(KafkaSettings())
    await everything.start()
    try:
        async with MindstreamClient() as client:
            print(f"you > {QUESTION}")
            async for item in client.stream("team", QUESTION, user="example-user",
                                            session=f"team-{uuid.uuid4().hex[:8]}", timeout=timeout):
                if isinstance(item, RunCompleted):
                    result = item
                    show.final(item)
                    continue
                show.event(item, who="team")
                if item.kind is RunEventKind.RUN_CHILD_STARTED and item.child_run_id:
                    children[item.child_run_id] = str(item.data.get("member", "?"))
        # A child finishes before its parent goes on, so its events are all published by now.
        child_events = [e for e in await everything.read_up_to_now() if e.run_id in children]
    finally:
        await everything.stop()

    print("\nwhat the members did (their child runs):")
    searched = False
    member_view = EventLine(indent="  ")
    for event in sorted(child_events, key=lambda e: (e.run_id, e.seq)):
        member_view.event(event, who=children[event.run_id])
        searched |= (event.kind is RunEventKind.TOOL_COMPLETED and event.tool == "knowledge_search"
                     and children[event.run_id] == "researcher")
    if result is None:
        raise ExampleFailed("the event stream ended without a result")
    if result.status.value != "completed":
        raise ExampleFailed(f"the team's run {result.status.value}: {result.error}")
    if "researcher" not in children.values():
        raise ExampleFailed("the team answered without delegating to the researcher")
    if not searched:
        raise ExampleFailed("the researcher did not search the knowledge base")
    print(f"\nanswer: {result.output}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the answer")
    args = parser.parse_args()
    sys.exit(run_example("research_team", main(args.timeout)))
