"""A tool that waits for a human: the `fetcher` agent's http_fetch needs an approval.

What it shows: the `fetcher` agent lists http_fetch under `require_approval`,
so when the model asks for a fetch the run pauses (event
`run.awaiting_approval`, nothing fetched yet). An operator -- here this script
-- approves that one call with a RunCommand (``client.command(...,
RunCommandKind.APPROVE, call_id=...)``); the run resumes, the tools service
fetches the page and the agent answers. The page is served by this script on
127.0.0.1, so you can see that it is fetched only after the approval.

Run it while mindstream is up on this machine (`make demo` or `mindstream demo
--keep`; their tools service may fetch from 127.0.0.1):

    python examples/approval_gated_tool.py
    python examples/approval_gated_tool.py --url https://example.com/   # a deployment's allowed host

Exits 0 when the run paused for approval, fetched after it, and answered; 1
with a reason otherwise.
"""

from __future__ import annotations

import argparse
import http.server
import sys
import threading
import uuid
from typing import Any

from _common import EventLine, ExampleFailed, run_example

from mindstream.client import MindstreamClient
from schemas.runs import RunCommandKind, RunCompleted, RunEventKind

PAGE = b"""# Release notes 2.0

- Shopping lists scale with the number of guests.
- Wine suggestions for every recipe.
"""


class ReleaseNotes:
    """A one-page web server that remembers when it was asked for the page."""

    def __init__(self) -> None:
        self.fetched = threading.Event()
        notes = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                notes.fetched.set()
                self.send_response(200)
                self.send_header("content-type", "text/markdown; charset=utf-8")
                self.send_header("content-length", str(len(PAGE)))
                self.end_headers()
                self.wfile.write(PAGE)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/release-notes.md"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


async def main(url: str | None, timeout: float) -> None:
    notes = ReleaseNotes() if url is None else None
    target = url or (notes.url if notes else "")
    question = f"Summarise the release notes at {target}"
    show = EventLine()
    waited = fetched_before_approval = False
    fetch_ok = False
    result: RunCompleted | None = None
    session = f"ops-{uuid.uuid4().hex[:8]}"
    try:
        async with MindstreamClient() as client:
            print(f"you > {question}")
            async for item in client.stream("fetcher", question, session=session,
                                            user="example-user", timeout=timeout):
                if isinstance(item, RunCompleted):
                    result = item
                    show.final(item)
                    continue
                show.event(item)
                if item.kind is RunEventKind.RUN_AWAITING_APPROVAL and item.call_id:
                    waited = True
                    fetched_before_approval = notes is not None and notes.fetched.is_set()
                    print(f"operator > approve {item.tool} call {item.call_id}")
                    await client.command(item.run_id, session, RunCommandKind.APPROVE,
                                         call_id=item.call_id, actor="example-operator",
                                         reason="the page is ours")
                if item.kind is RunEventKind.TOOL_COMPLETED and item.tool == "http_fetch":
                    fetch_ok = bool(item.data.get("ok", True))
    finally:
        if notes is not None:
            notes.close()
    if result is None:
        raise ExampleFailed("the event stream ended without a result")
    if not waited:
        raise ExampleFailed("the run did not pause for approval")
    if fetched_before_approval:
        raise ExampleFailed("the page was fetched before the approval")
    if not fetch_ok or (notes is not None and not notes.fetched.is_set()):
        raise ExampleFailed("http_fetch did not fetch the page after the approval")
    if result.status.value != "completed":
        raise ExampleFailed(f"the run {result.status.value}: {result.error}")
    print(f"answer: {result.output}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="page to fetch (default: one this script serves on 127.0.0.1)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the answer")
    args = parser.parse_args()
    sys.exit(run_example("approval_gated_tool", main(args.url, args.timeout)))
