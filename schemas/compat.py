"""Is a new JSON Schema a compatible evolution of an old one?

The rule is BACKWARD compatibility, tightened by ``extra="forbid"``: every
message valid under the old schema must stay valid under the new one, so a
consumer upgraded first still reads everything already on the topic and
everything old producers still write. What breaks it: a field removed (or
renamed, which is a removal), a type narrowed, an optional field made
required, a new required field, an enum value removed, a bound tightened, a
pattern or format changed. Adding an optional field is fine. Anything that
breaks needs a new topic version (``.v2``), never an edit of ``.v1``.

The comparison is structural over the subset of JSON Schema pydantic emits
(``$ref``/``$defs``, ``anyOf``, objects, arrays, scalars with bounds); a
construct it does not understand is reported as a change rather than
silently accepted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["check_compatible", "check_snapshots", "contract_path", "snapshot_all"]

_IGNORED = frozenset(
    {"title", "description", "default", "examples", "$defs", "$schema", "$id", "$comment"}
)
_LOWER_BOUNDS = ("minLength", "minItems", "minProperties", "minimum", "exclusiveMinimum")
_UPPER_BOUNDS = ("maxLength", "maxItems", "maxProperties", "maximum", "exclusiveMaximum")
_EXACT = ("pattern", "format", "const", "multipleOf")
_HANDLED = frozenset(
    {
        "type",
        "enum",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "prefixItems",
        "anyOf",
        "oneOf",
        "$ref",
        "uniqueItems",
        "propertyNames",
        *_LOWER_BOUNDS,
        *_UPPER_BOUNDS,
        *_EXACT,
    }
)
_NAMES = {
    "minLength": "min_length",
    "maxLength": "max_length",
    "minItems": "min_items",
    "maxItems": "max_items",
    "minProperties": "min_properties",
    "maxProperties": "max_properties",
    "minimum": "minimum",
    "maximum": "maximum",
    "exclusiveMinimum": "exclusive_minimum",
    "exclusiveMaximum": "exclusive_maximum",
}

Schema = dict[str, Any]


def check_compatible(old_schema: Schema, new_schema: Schema) -> list[str]:
    """Breaking changes from ``old_schema`` to ``new_schema``, each naming its field path."""
    checker = _Checker(old_schema, new_schema)
    checker.compare(old_schema, new_schema, "")
    return checker.problems


class _Checker:
    def __init__(self, old_root: Schema, new_root: Schema) -> None:
        self.old_root = old_root
        self.new_root = new_root
        self.problems: list[str] = []
        self._seen: set[tuple[str, str, str]] = set()

    def _resolve(self, root: Schema, schema: Any) -> Schema:
        hops = 0
        while isinstance(schema, dict) and "$ref" in schema and hops < 32:
            ref = schema["$ref"]
            if not isinstance(ref, str) or not ref.startswith("#/"):
                return {"$unresolvable": ref}
            node: Any = root
            for part in ref[2:].split("/"):
                node = node.get(part, {}) if isinstance(node, dict) else {}
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**node, **rest} if isinstance(node, dict) else {}
            hops += 1
        if schema is True or schema is None:
            return {}
        if schema is False:
            return {"not": {}}
        return schema if isinstance(schema, dict) else {}

    def _report(self, path: str, text: str) -> None:
        self.problems.append(f"{path or '<root>'}: {text}")

    def compare(self, old_raw: Any, new_raw: Any, path: str) -> None:
        key = (path, json.dumps(old_raw, sort_keys=True), json.dumps(new_raw, sort_keys=True))
        if key in self._seen:  # recursive models: each pair once per path
            return
        self._seen.add(key)
        old = self._resolve(self.old_root, old_raw)
        new = self._resolve(self.new_root, new_raw)
        old_branches = _branches(old)
        new_branches = _branches(new)
        if len(old_branches) > 1 or len(new_branches) > 1:
            self._compare_unions(old_branches, new_branches, path)
            return
        self._compare_single(old, new, path)

    def _compare_unions(self, olds: list[Any], news: list[Any], path: str) -> None:
        for old_branch in olds:
            old = self._resolve(self.old_root, old_branch)
            candidates = [
                n for n in news if _types(self._resolve(self.new_root, n)) >= _types(old)
            ] or news
            best: list[str] | None = None
            for candidate in candidates:
                trial = _Checker(self.old_root, self.new_root)
                trial._seen = set(self._seen)
                trial.compare(old_branch, candidate, path)
                if not trial.problems:
                    best = []
                    break
                if best is None or len(trial.problems) < len(best):
                    best = trial.problems
            if best:
                if not any(_types(self._resolve(self.new_root, n)) >= _types(old) for n in news):
                    self._report(path, f"{_type_text(old)} no longer accepted")
                else:
                    self.problems.extend(best)

    def _compare_single(self, old: Schema, new: Schema, path: str) -> None:
        if not new or set(new) <= _IGNORED:
            return  # the new schema accepts anything
        for keyword in sorted(set(new) - _HANDLED - _IGNORED):
            if old.get(keyword) != new[keyword]:
                self._report(path, f"unsupported keyword {keyword!r} changed")
        old_types, new_types = _types(old), _types(new)
        if old_types and not old_types <= new_types:
            self._report(path, f"type changed from {_type_text(old)} to {_type_text(new)}")
            return
        if not old_types and new_types:
            self._report(path, f"type restricted to {_type_text(new)}")
            return
        self._compare_values(old, new, path)
        self._compare_bounds(old, new, path)
        self._compare_object(old, new, path)
        self._compare_array(old, new, path)

    def _compare_values(self, old: Schema, new: Schema, path: str) -> None:
        if "enum" in new:
            if "enum" not in old and "const" not in old:
                self._report(path, "enum restriction added")
            else:
                old_values = old.get("enum", [old.get("const")])
                removed = [v for v in old_values if v not in new["enum"]]
                if removed:
                    shown = ", ".join(json.dumps(v) for v in removed)
                    self._report(path, f"enum value removed: {shown}")
        for keyword in _EXACT:
            if keyword in new and new[keyword] != old.get(keyword):
                if (
                    keyword == "const"
                    and new[keyword] in old.get("enum", [None])
                    and (len(old.get("enum", [])) == 1)
                ):
                    continue
                before = json.dumps(old[keyword]) if keyword in old else "none"
                self._report(path, f"{keyword} changed from {before} to {json.dumps(new[keyword])}")

    def _compare_bounds(self, old: Schema, new: Schema, path: str) -> None:
        for keyword in _LOWER_BOUNDS:
            if keyword in new and (keyword not in old or new[keyword] > old[keyword]):
                before = old.get(keyword, "none")
                self._report(path, f"{_NAMES[keyword]} tightened from {before} to {new[keyword]}")
        for keyword in _UPPER_BOUNDS:
            if keyword in new and (keyword not in old or new[keyword] < old[keyword]):
                before = old.get(keyword, "none")
                self._report(path, f"{_NAMES[keyword]} tightened from {before} to {new[keyword]}")
        if new.get("uniqueItems") and not old.get("uniqueItems"):
            self._report(path, "items must now be unique")

    def _compare_object(self, old: Schema, new: Schema, path: str) -> None:
        old_props: Schema = old.get("properties", {})
        new_props: Schema = new.get("properties", {})
        new_extra = new.get("additionalProperties", True)
        for name, old_prop in old_props.items():
            child = _join(path, name)
            if name in new_props:
                self.compare(old_prop, new_props[name], child)
            elif new_extra is False:
                self._report(child, "field removed")
            else:
                self.compare(old_prop, new_extra, child)
        old_required = set(old.get("required", []))
        for name in new.get("required", []):
            if name in old_required:
                continue
            if name in old_props:
                self._report(_join(path, name), "field changed from optional to required")
            else:
                self._report(_join(path, name), "new required field")
        self._compare_extra(old, new, path)
        if "propertyNames" in new:
            self.compare(old.get("propertyNames", {}), new["propertyNames"], _join(path, "{key}"))

    def _compare_extra(self, old: Schema, new: Schema, path: str) -> None:
        old_extra = old.get("additionalProperties", True)
        new_extra = new.get("additionalProperties", True)
        if old_extra is not False and "additionalProperties" in new:
            if new_extra is False:
                self._report(path, "additional properties no longer allowed")
            elif isinstance(new_extra, dict):
                self.compare(
                    old_extra if isinstance(old_extra, dict) else {}, new_extra, _join(path, "{}")
                )
        elif isinstance(old_extra, dict) and isinstance(new_extra, dict):
            self.compare(old_extra, new_extra, _join(path, "{}"))

    def _compare_array(self, old: Schema, new: Schema, path: str) -> None:
        if "items" in new:
            self.compare(old.get("items", {}), new["items"], path + "[]")
        if "prefixItems" in new or "prefixItems" in old:
            old_prefix = old.get("prefixItems", [])
            new_prefix = new.get("prefixItems", [])
            for index, new_item in enumerate(new_prefix):
                old_item = old_prefix[index] if index < len(old_prefix) else old.get("items", {})
                self.compare(old_item, new_item, f"{path}[{index}]")


def _branches(schema: Schema) -> list[Any]:
    for keyword in ("anyOf", "oneOf"):
        if keyword in schema and isinstance(schema[keyword], list):
            return list(schema[keyword])
    return [schema]


def _types(schema: Schema) -> set[str]:
    raw = schema.get("type")
    types = set(raw) if isinstance(raw, list) else ({raw} if isinstance(raw, str) else set())
    if "number" in types:
        types.add("integer")
    if "const" in schema and not types:
        types.add(_json_type(schema["const"]))
    if "enum" in schema and not types:
        types.update(_json_type(v) for v in schema["enum"])
    return types


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _type_text(schema: Schema) -> str:
    types = _types(schema)
    if "number" in types:
        types.discard("integer")
    return "|".join(sorted(types)) or "any"


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def contract_path(root: Path, topic_name: str) -> Path:
    """Where the committed snapshot of a topic's contract lives."""
    return root / "schemas" / "contracts" / f"{topic_name}.json"


def snapshot_all(root: Path, *, overwrite: bool = False) -> list[Path]:
    """Write snapshots for topics that have none yet (all of them if ``overwrite``).

    Run this only when deliberately adding a topic (or a new ``.vN``):
    existing snapshots are the frozen contract and are kept by default.
    """
    from schemas.export import render_json, topic_json_schema
    from schemas.topics import TOPICS

    written: list[Path] = []
    for spec in TOPICS:
        path = contract_path(root, spec.name)
        if path.exists() and not overwrite:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_json(topic_json_schema(spec)), encoding="utf-8")
        written.append(path)
    return written


def check_snapshots(root: Path) -> list[str]:
    """Breaking changes of every registered topic against its committed snapshot."""
    from schemas.export import topic_json_schema
    from schemas.topics import TOPICS

    problems: list[str] = []
    for spec in TOPICS:
        path = contract_path(root, spec.name)
        if not path.exists():
            problems.append(f"{spec.name}: no committed contract snapshot at {path}")
            continue
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            problems.append(f"{spec.name}: unreadable contract snapshot {path}: {exc}")
            continue
        problems.extend(f"{spec.name}: {p}" for p in check_compatible(old, topic_json_schema(spec)))
    return problems
