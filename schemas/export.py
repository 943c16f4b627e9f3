"""Published contracts: JSON Schema per topic and one AsyncAPI 3.0 document.

They are generated from the models by :func:`export_all` and committed;
:func:`check_all` regenerates them in memory and reports any difference, so
CI fails when a model changed without re-exporting (or broke a committed v1
contract). ``root`` is the repository root, the directory holding ``schemas/``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from schemas.compat import check_snapshots
from schemas.envelope import CONTENT_TYPE, SPEC_VERSION, header_json_schema
from schemas.topics import DLQ_RETENTION_MS, TOPICS, TopicSpec

__all__ = [
    "ASYNCAPI_VERSION",
    "JSON_SCHEMA_DIALECT",
    "asyncapi_document",
    "check_all",
    "default_root",
    "expected_files",
    "export_all",
    "render_json",
    "topic_json_schema",
]

ASYNCAPI_VERSION = "3.0.0"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
_KAFKA_BINDING_VERSION = "0.5.0"


def default_root() -> Path:
    """The repository root this package lives in."""
    return Path(__file__).resolve().parent.parent


def _published(root: Path) -> Path:
    return root / "schemas" / "published"


def render_json(document: dict[str, Any]) -> str:
    """Stable text: sorted keys, two-space indent, trailing newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def topic_json_schema(spec: TopicSpec) -> dict[str, Any]:
    """The JSON Schema of a topic's message (validation mode), with identity attached."""
    schema = spec.message.model_json_schema(mode="validation")
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": f"urn:mindstream:schema:{spec.name}",
        "x-ce-type": spec.message.ce_type,
        "x-schema-version": spec.message.schema_version,
        **schema,
    }


def _channel_id(name: str) -> str:
    words = name.removeprefix("mindstream.").replace("-", "_").replace(".", "_").split("_")
    return words[0] + "".join(w.capitalize() for w in words[1:])


def _kafka_topic_binding(
    spec: TopicSpec, name: str, retention_ms: int, policy: str
) -> dict[str, Any]:
    return {
        "kafka": {
            "topic": name,
            "partitions": spec.partitions,
            "topicConfiguration": {"cleanup.policy": [policy], "retention.ms": retention_ms},
            "bindingVersion": _KAFKA_BINDING_VERSION,
        }
    }


def asyncapi_document() -> dict[str, Any]:
    """The AsyncAPI 3.0 description of every topic, its dead-letter topic and message."""
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for spec in TOPICS:
        message_name = spec.message.__name__
        channel = _channel_id(spec.name)
        channels[channel] = {
            "address": spec.name,
            "title": spec.name,
            "description": spec.description,
            "messages": {message_name: {"$ref": f"#/components/messages/{message_name}"}},
            "bindings": _kafka_topic_binding(
                spec, spec.name, spec.retention_ms, spec.cleanup_policy
            ),
        }
        channels[channel + "Dlq"] = {
            "address": spec.dlq,
            "title": spec.dlq,
            "description": (
                f"Dead letters of {spec.name}: the original record, unchanged, with "
                "dlq_reason, dlq_topic, dlq_partition and dlq_offset headers added."
            ),
            "messages": {"DeadLetter": {"$ref": "#/components/messages/DeadLetter"}},
            "bindings": _kafka_topic_binding(spec, spec.dlq, DLQ_RETENTION_MS, "delete"),
        }
        messages[message_name] = {
            "name": message_name,
            "title": message_name,
            "summary": (spec.message.__doc__ or "").strip().splitlines()[0],
            "contentType": CONTENT_TYPE,
            "headers": header_json_schema(
                ce_type=spec.message.ce_type, schema_version=spec.message.schema_version
            ),
            "payload": {"$ref": f"./jsonschema/{spec.name}.json"},
            "bindings": {
                "kafka": {
                    "key": {"type": "string", "description": f"The message's {spec.key}."},
                    "bindingVersion": _KAFKA_BINDING_VERSION,
                }
            },
        }
    messages["DeadLetter"] = {
        "name": "DeadLetter",
        "title": "DeadLetter",
        "summary": "A record that could not be processed, kept byte for byte.",
        "headers": {
            "type": "object",
            "properties": {
                "dlq_reason": {"type": "string"},
                "dlq_topic": {"type": "string"},
                "dlq_partition": {"type": "string"},
                "dlq_offset": {"type": "string"},
            },
            "required": ["dlq_reason", "dlq_topic"],
        },
        "payload": {"description": "The original record value, possibly invalid."},
    }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "mindstream",
            "version": "1",
            "description": (
                "Versioned Kafka topics of mindstream. Envelope attributes follow the "
                f"CloudEvents {SPEC_VERSION} Kafka binding (binary mode, ce_* headers)."
            ),
        },
        "defaultContentType": CONTENT_TYPE,
        "channels": channels,
        "components": {"messages": messages},
    }


def expected_files(root: Path) -> dict[Path, str]:
    """Every published file and the text it must have."""
    published = _published(root)
    files = {
        published / "jsonschema" / f"{spec.name}.json": render_json(topic_json_schema(spec))
        for spec in TOPICS
    }
    files[published / "asyncapi.yaml"] = yaml.safe_dump(
        asyncapi_document(), sort_keys=False, allow_unicode=True, width=100
    )
    return files


def export_all(root: Path) -> list[Path]:
    """Write every published file under ``root/schemas/published``; remove stale schemas."""
    files = expected_files(root)
    written: list[Path] = []
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        written.append(path)
    for stale in _stale(root, files):
        stale.unlink()
    return written


def check_all(root: Path) -> list[str]:
    """Drift between the models and the committed files; empty means in sync.

    Also reports breaking changes against the committed contract snapshots
    (:func:`schemas.compat.check_snapshots`), which re-exporting cannot fix.
    """
    problems: list[str] = []
    for path, text in expected_files(root).items():
        shown = path.relative_to(root) if path.is_relative_to(root) else path
        if not path.exists():
            problems.append(f"{shown}: missing (run `mindstream schemas export`)")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{shown}: out of date (run `mindstream schemas export`)")
    for stale in _stale(root, expected_files(root)):
        problems.append(f"{stale.relative_to(root)}: no topic publishes it any more")
    problems.extend(f"breaking change: {p}" for p in check_snapshots(root))
    return problems


def _stale(root: Path, files: dict[Path, str]) -> list[Path]:
    directory = _published(root) / "jsonschema"
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob("*.json") if p not in files)
