"""``mindstream workflows apply|list|show|run|approve|reject|cancel``.

``apply`` works like ``agents apply``: every file is validated first (the
graph too: cycles outside loops, unreachable steps, unknown references) and
nothing is published if one is invalid (exit 2, one line naming the file and
the problem). Agents the workflows name are checked against the agents topic
when it has any. A file without ``version`` gets the next one when its
content changed; unchanged content is a no-op.

``run NAME --input TEXT`` publishes a WorkflowRequested and prints the
workflow run id; ``--follow`` prints the run's events until it ends (exit 0
when it completed, 1 otherwise).
"""

from __future__ import annotations

import argparse
import json
import uuid
from pathlib import Path
from typing import Any

from mindstream.cli import versioned
from mindstream.cli.errors import CliError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    wf = sub.add_parser("workflows", help="publish, run and steer multi-step workflows")
    wf_sub = wf.add_subparsers(dest="workflows_command", metavar="ACTION", required=True)
    apply = wf_sub.add_parser("apply", help="validate and publish workflow YAML files")
    apply.add_argument("-f", "--file", dest="paths", action="append", required=True,
                       help="a YAML file or a folder of them (repeatable)")
    apply.add_argument("--dry-run", action="store_true", help="validate and plan, publish nothing")
    apply.add_argument("--skip-agent-check", action="store_true",
                       help="do not check the agents the workflows name against the agents topic")
    apply.set_defaults(handler=_apply)
    wf_sub.add_parser("list", help="list the workflows on the topic").set_defaults(handler=_list)
    show = wf_sub.add_parser("show", help="print one workflow definition as JSON")
    show.add_argument("workflow", help="workflow id, or id@version")
    show.set_defaults(handler=_show)
    run = wf_sub.add_parser("run", help="start a workflow run")
    run.add_argument("workflow", help="workflow id, optionally pinned: name@2")
    run.add_argument("--input", "-i", required=True, help="the workflow's input ({{input}})")
    run.add_argument("--user", "-u", default="cli-user", help="user id the steps run for")
    run.add_argument("--id", dest="run_id", default=None, help="workflow run id (idempotency key)")
    run.add_argument("--follow", "-f", action="store_true", help="print events until it ends")
    run.add_argument("--timeout", type=float, default=600.0, help="seconds to follow")
    run.set_defaults(handler=_run_workflow)
    for name, text in (("approve", "approve a waiting approval step"),
                       ("reject", "reject a waiting approval step"),
                       ("cancel", "cancel a workflow run")):
        cmd = wf_sub.add_parser(name, help=text)
        cmd.add_argument("workflow_run_id")
        if name != "cancel":
            cmd.add_argument("--step", default=None,
                             help="approval step (default: the waiting one)")
        cmd.add_argument("--reason", default=None)
        cmd.add_argument("--actor", default="cli-operator")
        cmd.set_defaults(handler=_command, kind=name)


# -- apply ---------------------------------------------------------------------------------

def _files(paths: list[str]) -> list[Path]:
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
        elif path.is_file():
            found.append(path)
        else:
            raise CliError(f"{raw}: no such file or folder")
    if not found:
        raise CliError(f"no .yaml files in {', '.join(paths)}")
    return found


def _problem(path: Path, exc: Exception) -> CliError:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err.get("loc", ()))
        msg = str(err.get("msg", "")).removeprefix("Value error, ")
        where = f"field '{loc}': " if loc else ""
        more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        return CliError(f"{path}: {where}{msg}{more}")
    return CliError(f"{path}: {exc}")


def load_workflows(paths: list[str]) -> list[tuple[Path, dict[str, Any], Any]]:
    """Parse and validate every file: (path, raw mapping, WorkflowDefinition with a version)."""
    import yaml
    from pydantic import ValidationError

    from schemas.workflows import WorkflowDefinition

    loaded: list[tuple[Path, dict[str, Any], Any]] = []
    seen: dict[str, Path] = {}
    for path in _files(paths):
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise CliError(f"{path}: not readable YAML: {str(exc).splitlines()[0]}") from exc
        if not isinstance(raw, dict):
            raise CliError(f"{path}: expected a mapping of workflow fields")
        try:
            definition = WorkflowDefinition.model_validate({"version": 1, **raw})
        except (ValidationError, ValueError) as exc:
            raise _problem(path, exc) from exc
        if definition.id in seen:
            raise CliError(f"{path}: workflow '{definition.id}' is also defined in "
                           f"{seen[definition.id]}")
        seen[definition.id] = path
        loaded.append((path, raw, definition))
    return loaded


def check_agents(loaded: list[tuple[Path, dict[str, Any], Any]], registry: Any) -> None:
    """Refuse workflows naming agents the agents topic does not have (when it has any)."""
    from schemas.workflows import agent_refs

    if not registry.all():
        return
    for path, _raw, definition in loaded:
        for step, ref in agent_refs(definition):
            if registry.get(ref) is None:
                raise CliError(f"{path}: step '{step}' names unknown agent '{ref}' "
                               "(apply it first: mindstream agents apply -f agents/)")


def plan(current: Any, raw: dict[str, Any], definition: Any) -> tuple[str, int]:
    """What applying ``definition`` over ``current`` means: (action, version)."""
    return versioned.plan("workflow", current, raw, definition)


async def _publish_all(loaded: list[tuple[Path, dict[str, Any], Any]], dry_run: bool,
                       agent_check: bool) -> list[str]:
    from schemas.topics import WORKFLOWS
    from services.workflows.definitions import WorkflowBook, read_definitions
    from shared.agent_registry import AgentRegistry
    from shared.settings import KafkaSettings

    settings = KafkaSettings()
    if agent_check:
        registry = AgentRegistry()
        await registry.load(settings, timeout_s=15.0)
        check_agents(loaded, registry)
    book = WorkflowBook()
    for definition in await read_definitions(settings, timeout_s=15.0):
        book.apply(definition)
    lines, to_send = versioned.apply_plan(loaded, book.get, plan)
    if not dry_run and to_send:
        await versioned.publish_versions(WORKFLOWS, "workflow", to_send)
    return lines


_run = versioned.run_with_kafka


def _apply(args: argparse.Namespace) -> int:
    loaded = load_workflows(args.paths)
    versioned.print_plan(_run(_publish_all(loaded, args.dry_run, not args.skip_agent_check)),
                         args.dry_run)
    return 0


# -- list, show ----------------------------------------------------------------------------

async def _book() -> Any:
    from services.workflows.definitions import WorkflowBook, read_definitions
    from shared.settings import KafkaSettings

    book = WorkflowBook()
    for definition in await read_definitions(KafkaSettings(), timeout_s=15.0):
        book.apply(definition)
    return book


def _list(_args: argparse.Namespace) -> int:
    workflows = sorted(_run(_book()).all(), key=lambda d: d.id)
    if not workflows:
        print("no workflows published (mindstream workflows apply -f workflows/)")
        return 0
    print(f"{'workflow':<24} {'ver':>4} {'steps':>5}  description")
    for d in workflows:
        print(f"{d.id:<24} {d.version:>4} {len(d.steps):>5}  {d.description}")
    return 0


def _show(args: argparse.Namespace) -> int:
    definition = _run(_book()).get(args.workflow)
    if definition is None:
        raise CliError(f"no workflow '{args.workflow}' on the workflows topic", exit_code=1)
    print(json.dumps(definition.model_dump(mode="json", exclude_none=True), indent=2))
    return 0


# -- run, follow, commands -----------------------------------------------------------------

def _run_workflow(args: argparse.Namespace) -> int:
    from mindstream.client import RunTimeoutError

    try:
        result: int = _run(_start(args))
    except RunTimeoutError as exc:
        raise CliError(f"{exc} (is the workflows service running? `mindstream dev status`)",
                       1) from exc
    return result


async def _start(args: argparse.Namespace) -> int:
    from mindstream.client import MindstreamClient

    run_id = args.run_id or f"wr-{uuid.uuid4().hex[:16]}"
    async with MindstreamClient() as client:
        if not args.follow:
            await client.start_workflow(args.workflow, args.input, user=args.user,
                                        workflow_run_id=run_id)
            print(run_id)
            return 0
        async for event in client.follow_workflow(args.workflow, args.input, user=args.user,
                                                  workflow_run_id=run_id, timeout=args.timeout):
            print(render_event(event))
            if event.terminal:
                if event.output:
                    print(event.output)
                return 0 if event.kind.value == "workflow.completed" else 1
    return 1


def render_event(event: Any) -> str:
    """One line per workflow event: seq, kind, step, and the detail worth seeing."""
    parts = [f"#{event.seq:<3}", f"{event.kind.value:<26}"]
    if event.step:
        parts.append(event.step)
    if event.attempt and event.attempt > 1:
        parts.append(f"(attempt {event.attempt})")
    if event.reason:
        parts.append(f"- {event.reason}")
    elif event.kind.value == "step.completed" and event.output:
        text = " ".join(event.output.split())
        parts.append(f"-> {text[:80]}{'…' if len(text) > 80 else ''}")
    elif "message" in event.data:
        parts.append(f"- {event.data['message']}")
    return " ".join(parts)


def _command(args: argparse.Namespace) -> int:
    _run(_send_command(args))
    print(f"{args.kind} sent to {args.workflow_run_id}")
    return 0


async def _send_command(args: argparse.Namespace) -> None:
    from mindstream.client import MindstreamClient
    from schemas.workflows import WorkflowCommandKind

    async with MindstreamClient() as client:
        await client.workflow_command(args.workflow_run_id, WorkflowCommandKind(args.kind),
                                      step=getattr(args, "step", None), reason=args.reason,
                                      actor=args.actor)

