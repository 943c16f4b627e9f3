"""``mindstream agents apply|list|show``: agent definitions on the compacted agents topic.

``apply`` validates every file first and publishes nothing if one is invalid
(exit 2, one line naming the file and the field). A file without ``version``
gets the next one: the newest version on the topic + 1 when the content
changed; unchanged content is a no-op. An explicit ``version`` must be newer
than the published one (or equal, with unchanged content).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from mindstream.cli import versioned
from mindstream.cli.errors import CliError

_IGNORED = {"version", "updated_at", "rollout"}  # a canary is routing, not content


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    agents = sub.add_parser("agents", help="publish, list and show agent definitions")
    agents_sub = agents.add_subparsers(dest="agents_command", metavar="ACTION", required=True)
    apply = agents_sub.add_parser("apply", help="validate and publish agent YAML files")
    apply.add_argument("-f", "--file", dest="paths", action="append", required=True,
                       help="a YAML file or a folder of them (repeatable)")
    apply.add_argument("--dry-run", action="store_true", help="validate and plan, publish nothing")
    apply.set_defaults(handler=_apply)
    agents_sub.add_parser("list", help="list the agents on the topic").set_defaults(handler=_list)
    show = agents_sub.add_parser("show", help="print one agent definition")
    show.add_argument("agent", help="agent id, or id@version")
    show.add_argument("--json", action="store_true", help="JSON instead of YAML")
    show.set_defaults(handler=_show)


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


def _field_error(path: Path, exc: Exception) -> CliError:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err.get("loc", ())) or "(definition)"
        more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        return CliError(f"{path}: field '{loc}': {err.get('msg')}{more}")
    return CliError(f"{path}: {exc}")


def load_definitions(paths: list[str]) -> list[tuple[Path, dict[str, Any], Any]]:
    """Parse and validate every file: (path, raw mapping, AgentDefinition with a version)."""
    import yaml
    from pydantic import ValidationError

    from schemas.agents import AgentDefinition

    loaded: list[tuple[Path, dict[str, Any], Any]] = []
    seen: dict[str, Path] = {}
    for path in _files(paths):
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise CliError(f"{path}: not readable YAML: {str(exc).splitlines()[0]}") from exc
        if not isinstance(raw, dict):
            raise CliError(f"{path}: expected a mapping of agent fields")
        try:
            definition = AgentDefinition.model_validate({"version": 1, **raw})
        except (ValidationError, ValueError) as exc:
            raise _field_error(path, exc) from exc
        if definition.id in seen:
            raise CliError(f"{path}: agent '{definition.id}' is also defined in {seen[definition.id]}")
        seen[definition.id] = path
        loaded.append((path, raw, definition))
    return loaded


def plan(current: Any, raw: dict[str, Any], definition: Any) -> tuple[str, int]:
    """What applying ``definition`` over ``current`` means: (action, version)."""
    return versioned.plan("agent", current, raw, definition, ignored=_IGNORED)


async def _publish_all(loaded: list[tuple[Path, dict[str, Any], Any]], dry_run: bool) -> list[str]:
    from schemas.topics import AGENTS
    from shared.agent_registry import AgentRegistry
    from shared.settings import KafkaSettings

    registry = AgentRegistry()
    await registry.load(KafkaSettings(), timeout_s=15.0)
    lines, to_send = versioned.apply_plan(loaded, registry.get, plan)
    if not dry_run and to_send:
        await versioned.publish_versions(AGENTS, "agent", to_send)
    return lines


_run = versioned.run_with_kafka


def _apply(args: argparse.Namespace) -> int:
    loaded = load_definitions(args.paths)
    versioned.print_plan(_run(_publish_all(loaded, args.dry_run)), args.dry_run)
    return 0


async def _registry() -> Any:
    from shared.agent_registry import AgentRegistry
    from shared.settings import KafkaSettings

    registry = AgentRegistry()
    await registry.load(KafkaSettings(), timeout_s=15.0)
    return registry


def _list(_args: argparse.Namespace) -> int:
    registry = _run(_registry())
    agents = sorted(registry.all(), key=lambda d: d.id)
    if not agents:
        print("no agents published (mindstream agents apply -f agents/)")
        return 0
    print(f"{'agent':<20} {'ver':>4} {'model':<16} {'team':<22} tools")
    for d in agents:
        team = f"{d.team.mode.value}:{','.join(d.team.members)}" if d.team else "-"
        tools = ",".join(d.tools + (["knowledge_search"] if d.knowledge else [])) or "-"
        flags = " (paused)" if d.paused else ""
        print(f"{d.id:<20} {d.version:>4} {d.model.name:<16} {team:<22} {tools}{flags}")
    return 0


def _show(args: argparse.Namespace) -> int:
    import yaml

    registry = _run(_registry())
    definition = registry.get(args.agent)
    if definition is None:
        raise CliError(f"no agent '{args.agent}' on the agents topic", exit_code=1)
    body = definition.model_dump(mode="json", exclude_none=True)
    if args.json:
        print(json.dumps(body, indent=2))
    else:
        class _Dumper(yaml.SafeDumper):
            pass

        def _text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
            style = "|" if "\n" in value else None  # instructions read as written
            return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

        _Dumper.add_representer(str, _text)
        print(yaml.dump(body, Dumper=_Dumper, sort_keys=False).rstrip())
    return 0
