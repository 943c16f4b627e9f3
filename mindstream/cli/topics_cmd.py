"""``mindstream topics apply|list``: the topic registry, on a broker and on screen."""

from __future__ import annotations

import argparse
import asyncio

from mindstream.cli.errors import CliError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    topics = sub.add_parser("topics", help="create/update registered topics, or list them")
    topics_sub = topics.add_subparsers(dest="topics_command", metavar="ACTION", required=True)
    apply = topics_sub.add_parser("apply", help="create or update every registered topic (idempotent)")
    apply.add_argument("--prefix", default=None, help="topic name prefix (default: MINDSTREAM_TOPIC_PREFIX)")
    apply.add_argument("--max-partitions", type=int, default=None,
                       help="cap partition counts (small local setups)")
    apply.add_argument("--replication-factor", type=int, default=1,
                       help="replicas of new topics (production: 3)")
    apply.add_argument("--min-insync-replicas", type=int, default=None,
                       help="manage min.insync.replicas (production: 2); left alone if not given")
    apply.set_defaults(handler=_apply)
    topics_sub.add_parser("list", help="print the topic registry").set_defaults(handler=_list)


def _apply(args: argparse.Namespace) -> int:
    from aiokafka.errors import KafkaError

    from schemas.topics import TOPICS
    from shared.kafka.admin import apply_topics
    from shared.settings import KafkaSettings

    settings = KafkaSettings()
    prefix = settings.topic_prefix if args.prefix is None else args.prefix
    try:
        actions = asyncio.run(apply_topics(
            settings, TOPICS, prefix=prefix, max_partitions=args.max_partitions,
            replication_factor=args.replication_factor, min_insync_replicas=args.min_insync_replicas))
    except (KafkaError, OSError) as exc:
        raise CliError(f"cannot reach Kafka at {settings.bootstrap_servers}: {exc} "
                       "(is it running? `mindstream dev up`)") from exc
    for action in actions:
        print(f"{action.action:<9} {action.topic}  {action.detail}".rstrip())
    return 0


def _list(_args: argparse.Namespace) -> int:
    from schemas.topics import TOPICS

    print(f"{'topic':<36} {'key':<12} {'parts':>5} {'cleanup':<8} {'retention':>9}  message")
    for spec in TOPICS:
        retention = "forever" if spec.retention_ms < 0 else f"{spec.retention_ms / 86_400_000:.0f}d"
        print(f"{spec.name:<36} {spec.key:<12} {spec.partitions:>5} {spec.cleanup_policy:<8} "
              f"{retention:>9}  {spec.message.__name__}")
    return 0
