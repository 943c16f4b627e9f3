"""``mindstream demo [--once] [--keep]``: start everything and run the story.

Default: run the story, then keep everything up until Ctrl-C, then stop it.
``--once`` stops at the end (the non-interactive form tests use); ``--keep``
leaves everything running for exploration (``mindstream demo --stop`` stops it).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import threading

from mindstream.cli.errors import CliError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = sub.add_parser("demo", help="start everything locally and run the demo story")
    mode = demo.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="stop everything when the story ends")
    mode.add_argument("--keep", action="store_true", help="leave everything running afterwards")
    mode.add_argument("--stop", action="store_true", help="stop what `demo --keep` left running")
    demo.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    from mindstream.dev import DevError, DevSettings, process
    from mindstream.dev import services as svc

    if args.stop:
        settings = DevSettings()
        stopped = [n for n in svc.SERVICES
                   if process.stop(settings.cache_dir / "dev" / "run", f"svc-{n}")]
        print(f"stopped: {', '.join(stopped)}" if stopped else "no demo services were running")
        return 0

    from mindstream.demo import stack as demo_stack

    try:
        stack = demo_stack.start()
    except DevError as exc:
        raise CliError(str(exc)) from exc
    try:
        ok = asyncio.run(_story(stack))
        _urls(stack)
        if not ok:
            print("\nsome steps did not show what they should; service logs are in "
                  f"{stack.settings.log_dir}")
        if args.once:
            return 0 if ok else 1
        if args.keep:
            print("\neverything keeps running; `mindstream demo --stop` and `mindstream dev down` stop it")
            stack.running.clear()  # leave the processes alone
            stack.model_proc = None
            return 0 if ok else 1
        print("\nexplore, then press Ctrl-C to stop everything")
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
        return 0 if ok else 1
    finally:
        print("stopping the demo's services ...", flush=True)
        stack.stop()


async def _story(stack: object) -> bool:
    from mindstream.client import MindstreamClient
    from mindstream.demo.stack import DemoStack
    from mindstream.demo.story import Story

    assert isinstance(stack, DemoStack)
    async with MindstreamClient(stack.env["KAFKA_BOOTSTRAP_SERVERS"]) as client:
        story = Story(client, api_url=stack.api_url, token=stack.token, notes_url=stack.notes_url)
        ok = await story.tell()
    print("\n" + ("the story ran end to end" if ok else "the story did not complete"))
    return ok


def _urls(stack: object) -> None:
    from mindstream.demo.stack import DemoStack

    assert isinstance(stack, DemoStack)
    print("\nwhere to look:")
    print(f"  dashboard   {stack.api_url}/   (sign in with the token below)")
    print(f"  token       {stack.token}")
    for service in stack.running:
        print(f"  {service.name:<11} {service.url}/metrics")
