#!/usr/bin/env python3
"""Generate Strimzi ``KafkaTopic`` resources from the topic registry (``schemas/topics.py``).

The plan comes from ``shared.kafka.admin.planned_topics``, the same function
``mindstream topics apply`` uses, so both paths create the same topics, DLQs,
partition counts and retention. Production differs on purpose in two values:
3 replicas and ``min.insync.replicas=2`` (``topics apply`` targets one-broker
dev clusters). With Strimzi managing topics, run the provisioning Job with
the ``strimzi`` component so it does not also apply topics (see deploy/README.md).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from _gen import ROOT, dump_yaml, header, main_for

OUTPUT = ROOT / "deploy/k8s/strimzi/kafkatopics.yaml"
CLUSTER = "mindstream"  # the Strimzi Kafka resource's name
REPLICAS = 3
MIN_INSYNC_REPLICAS = "2"


def topics() -> list[dict[str, Any]]:
    from schemas.topics import TOPICS
    from shared.kafka.admin import planned_topics

    docs = []
    for planned in planned_topics(TOPICS):
        config = {**planned.configs, "min.insync.replicas": MIN_INSYNC_REPLICAS}
        docs.append({
            "apiVersion": "kafka.strimzi.io/v1beta2",
            "kind": "KafkaTopic",
            "metadata": {
                # Topic names are valid resource names (lower case, dots); topicName is explicit.
                "name": planned.name,
                "labels": {"strimzi.io/cluster": CLUSTER,
                           "app.kubernetes.io/part-of": "mindstream"},
            },
            "spec": {
                "topicName": planned.name,
                "partitions": planned.partitions,
                "replicas": REPLICAS,
                "config": dict(sorted(config.items())),
            },
        })
    return docs


def render() -> dict[Path, str]:
    return {OUTPUT: header("gen_kafkatopics.py", "schemas/topics.py") + dump_yaml(*topics())}


if __name__ == "__main__":
    sys.exit(main_for(__doc__.splitlines()[0], render))
