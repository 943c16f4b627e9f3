"""One agent and a tool: the `assistant` agent works out a sum with the calculator, live.

What it shows: ``MindstreamClient.stream()`` publishes a RunRequested and yields
the run's events as they happen -- the tool call, its result, the model's
streamed text -- then the RunCompleted with the answer.

Run it while mindstream is up (`make demo`, `mindstream demo --keep`, or any
deployment; KAFKA_BOOTSTRAP_SERVERS and MINDSTREAM_TOPIC_PREFIX say where):

    python examples/single_agent_tools.py
    python examples/single_agent_tools.py --question "What is 1234 * 5678?"   # needs a real model

Exits 0 when the run completed and used the calculator, 1 with a reason otherwise.
"""

from __future__ import annotations

import argparse
import sys
import uuid

from _common import EventLine, ExampleFailed, run_example

from mindstream.client import MindstreamClient
from schemas.runs import RunCompleted, RunEventKind

QUESTION = "A box holds 24 eggs. How many eggs are in 37 boxes?"


async def main(question: str, timeout: float) -> None:
    show = EventLine()
    used: set[str] = set()
    result: RunCompleted | None = None
    async with MindstreamClient() as client:
        print(f"you > {question}")
        # The stream ends after the RunCompleted; letting it end closes its consumer.
        async for item in client.stream("assistant", question, user="example-user",
                                        session=f"tools-{uuid.uuid4().hex[:8]}", timeout=timeout):
            if isinstance(item, RunCompleted):
                result = item
                show.final(item)
                continue
            show.event(item)
            if item.kind is RunEventKind.TOOL_COMPLETED and item.data.get("ok", True) and item.tool:
                used.add(item.tool)
    if result is None:
        raise ExampleFailed("the event stream ended without a result")
    if result.status.value != "completed":
        raise ExampleFailed(f"the run {result.status.value}: {result.error}")
    if "calculator" not in used:
        raise ExampleFailed("the assistant answered without the calculator")
    print(f"answer: {result.output}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--question", default=QUESTION)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the answer")
    args = parser.parse_args()
    sys.exit(run_example("single_agent_tools", main(args.question, args.timeout)))
