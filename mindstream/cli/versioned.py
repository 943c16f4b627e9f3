"""Applying versioned definitions (agents, workflows) from files: plan, then publish.

Both live on a compacted topic, one record per ``id@version``. Applying a
file publishes a new version only when its content changed (or when it names
a newer version itself), so applying the same files twice is a no-op.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Coroutine, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from mindstream.cli.errors import CliError

__all__ = ["apply_plan", "plan", "print_plan", "publish_versions", "run_with_kafka"]

T = TypeVar("T")
Loaded = Iterable[tuple[Path, dict[str, Any], Any]]


def plan(kind: str, current: Any, raw: dict[str, Any], definition: Any, *,
         ignored: Collection[str] = ("version", "updated_at")) -> tuple[str, int]:
    """What applying ``definition`` over ``current`` means: (action, version).

    ``ignored`` fields are not content (the version itself, timestamps, routing).
    """
    explicit = raw.get("version")
    if current is not None:
        exclude = set(ignored)
        same = current.model_dump(mode="json", exclude=exclude) == definition.model_dump(
            mode="json", exclude=exclude)
        if same and (explicit is None or explicit == current.version):
            return "unchanged", current.version
        if explicit is not None and explicit <= current.version:
            raise CliError(f"{kind} '{definition.id}': version {explicit} is not newer than the "
                           f"published version {current.version}")
        return "updated", explicit or current.version + 1
    return "created", explicit or 1


def apply_plan(loaded: Loaded, current: Callable[[str], Any],
               plan_one: Callable[[Any, dict[str, Any], Any], tuple[str, int]],
               ) -> tuple[list[str], list[Any]]:
    """One line per definition (``created  id@2``) and the new versions to publish."""
    lines, to_send = [], []
    for _path, raw, definition in loaded:
        action, version = plan_one(current(definition.id), raw, definition)
        lines.append(f"{action:<9} {definition.id}@{version}")
        if action != "unchanged":
            to_send.append(definition.model_copy(
                update={"version": version, "updated_at": datetime.now(UTC)}))
    return lines, to_send


async def publish_versions(spec: Any, kind: str, definitions: list[Any]) -> None:
    """Publish each new version under its deterministic id (a re-run publishes the same ids)."""
    from schemas.envelope import deterministic_id
    from shared.kafka.broker import make_broker
    from shared.kafka.publisher import Publisher
    from shared.settings import KafkaSettings

    settings = KafkaSettings()
    broker = make_broker(settings, client_id="mindstream-cli")
    publisher = Publisher(broker, source="mindstream/cli", topic_prefix=settings.topic_prefix)
    await broker.start()
    try:
        for d in definitions:
            await publisher.publish(spec, d, message_id=deterministic_id(kind, d.id, str(d.version)))
    finally:
        await broker.stop()


def print_plan(lines: list[str], dry_run: bool) -> None:
    for line in lines:
        print(line + (" (dry run)" if dry_run and not line.startswith("unchanged") else ""))


def run_with_kafka(coro: Coroutine[Any, Any, T]) -> T:
    """Run a CLI coroutine; an unreachable broker is one readable line, not a traceback."""
    from aiokafka.errors import KafkaError

    from shared.settings import KafkaSettings

    try:
        return asyncio.run(coro)
    except (KafkaError, OSError, TimeoutError) as exc:
        where = KafkaSettings().bootstrap_servers
        raise CliError(f"cannot reach Kafka at {where}: {exc or type(exc).__name__} "
                       "(is it running? `mindstream dev up`)") from exc
