"""Small data and text transforms, so a model need not eyeball long payloads.

``json_extract`` takes a JSON-path-ish selector — ``$``, ``.key``,
``['key']``, ``[0]``, ``[-1]``, ``[*]``/``.*`` — and no more: no filters,
no scripts, no jq. ``text_transform`` does upper/lower/strip/split/join.
``regex_extract`` runs in the sandbox: Python's ``re`` cannot be
interrupted, and a pathological pattern (``(a+)+$``) must cost a killed
subprocess, not a stuck worker thread. All inputs are size-bounded.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import Field

from services.tools.errors import ToolFailedError
from services.tools.registry import SandboxLimits, tool

__all__ = ["TOOLS", "extract_path", "json_extract", "parse_path", "regex_extract", "text_transform"]

MAX_INPUT_CHARS = 200_000
MAX_REGEX_INPUT_CHARS = 50_000
MAX_PATH_CHARS = 500
MAX_PARTS = 10_000

_TOKEN = re.compile(
    r"""\.(?P<name>[A-Za-z_][A-Za-z0-9_\-]*)
      | \.(?P<dotstar>\*)
      | \[\s*(?P<index>-?\d+)\s*\]
      | \[\s*(?P<star>\*)\s*\]
      | \[\s*'(?P<sq>(?:[^'\\]|\\.)*)'\s*\]
      | \[\s*"(?P<dq>(?:[^"\\]|\\.)*)"\s*\]""",
    re.VERBOSE,
)

PathStep = str | int | None  # None is the wildcard


def parse_path(path: str) -> list[PathStep]:
    """Parse ``$.a.b[0]`` into steps; a clear error points at the bad position."""
    path = path.strip()
    if len(path) > MAX_PATH_CHARS:
        raise ToolFailedError(f"path longer than {MAX_PATH_CHARS} characters")
    if not path.startswith("$"):
        raise ToolFailedError("a path starts with '$', e.g. $.items[0].name")
    steps: list[PathStep] = []
    pos = 1
    while pos < len(path):
        m = _TOKEN.match(path, pos)
        if m is None:
            raise ToolFailedError(
                f"cannot read path {path!r} at position {pos} ({path[pos : pos + 10]!r}); "
                "use .key, ['key'], [0], [-1] or [*]"
            )
        if m["name"] is not None:
            steps.append(m["name"])
        elif m["index"] is not None:
            steps.append(int(m["index"]))
        elif m["sq"] is not None or m["dq"] is not None:
            raw = m["sq"] if m["sq"] is not None else m["dq"]
            steps.append(re.sub(r"\\(.)", r"\1", raw))
        else:
            steps.append(None)
        pos = m.end()
    return steps


def extract_path(data: Any, steps: list[PathStep], _where: str = "$") -> Any:
    """Follow ``steps`` through ``data``; a wildcard maps the rest over every element."""
    for i, step in enumerate(steps):
        if step is None:
            if isinstance(data, dict):
                values = list(data.values())
            elif isinstance(data, list):
                values = data
            else:
                raise ToolFailedError(f"{_where}[*]: not a list or object")
            return [extract_path(v, steps[i + 1 :], f"{_where}[*]") for v in values]
        if isinstance(step, int):
            if not isinstance(data, list):
                raise ToolFailedError(f"{_where}: expected a list for [{step}], got {_kind(data)}")
            if not -len(data) <= step < len(data):
                raise ToolFailedError(f"{_where}[{step}]: index out of range (length {len(data)})")
            data = data[step]
            _where = f"{_where}[{step}]"
        else:
            if not isinstance(data, dict):
                raise ToolFailedError(
                    f"{_where}: expected an object for .{step}, got {_kind(data)}"
                )
            if step not in data:
                keys = ", ".join(sorted(map(str, data))[:20])
                raise ToolFailedError(f"{_where}: no key {step!r} (keys: {keys})")
            data = data[step]
            _where = f"{_where}.{step}"
    return data


def _kind(value: Any) -> str:
    names: dict[type, str] = {dict: "an object", list: "a list", str: "a string"}
    return names.get(type(value), type(value).__name__)


@tool(timeout_s=5.0)
def json_extract(
    data: Annotated[Any, Field(description="A JSON value, or a string containing JSON")],
    path: Annotated[str, Field(description="Selector like $.items[0].name or $.items[*].id")],
) -> dict[str, Any]:
    """Pick a value out of JSON data with a simple path ($.a.b[0], [*] for every element)."""
    if isinstance(data, str):
        if len(data) > MAX_INPUT_CHARS:
            raise ToolFailedError(f"input longer than {MAX_INPUT_CHARS} characters")
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise ToolFailedError(f"data is a string but not valid JSON: {exc}") from None
    elif len(json.dumps(data)) > MAX_INPUT_CHARS:
        raise ToolFailedError(f"input larger than {MAX_INPUT_CHARS} characters of JSON")
    return {"path": path, "value": extract_path(data, parse_path(path))}


@tool(timeout_s=5.0)
def text_transform(
    operation: Annotated[
        Literal["upper", "lower", "strip", "split", "join"],
        Field(
            description="upper/lower/strip act on text; split text by separator "
            "(whitespace if omitted); join items with separator"
        ),
    ],
    text: Annotated[str, Field(max_length=MAX_INPUT_CHARS)] = "",
    items: Annotated[list[str] | None, Field(max_length=MAX_PARTS)] = None,
    separator: Annotated[str | None, Field(max_length=100)] = None,
) -> dict[str, Any]:
    """Change case, strip, split or join text."""
    if operation == "join":
        if items is None:
            raise ToolFailedError("join needs 'items' (a list of strings)")
        joined = (separator or "").join(items)
        if len(joined) > MAX_INPUT_CHARS:
            raise ToolFailedError(f"joined text longer than {MAX_INPUT_CHARS} characters")
        return {"result": joined}
    if items is not None:
        raise ToolFailedError(f"{operation} works on 'text'; 'items' is only for join")
    if operation == "split":
        if separator == "":
            raise ToolFailedError("separator must not be empty")
        parts = text.split(separator, MAX_PARTS)
        return {"result": parts[:MAX_PARTS], "truncated": len(parts) > MAX_PARTS}
    if operation == "upper":
        return {"result": text.upper()}
    if operation == "lower":
        return {"result": text.lower()}
    return {"result": text.strip()}


@tool(timeout_s=5.0, sandbox=SandboxLimits(cpu_seconds=3, memory_mb=256))
def regex_extract(
    text: Annotated[str, Field(max_length=MAX_REGEX_INPUT_CHARS)],
    pattern: Annotated[str, Field(description="Python regular expression", max_length=500)],
    group: Annotated[int, Field(ge=0, le=99, description="Capture group to return")] = 0,
    max_matches: Annotated[int, Field(ge=1, le=1000)] = 100,
    ignore_case: bool = False,
) -> dict[str, Any]:
    """Find all matches of a regular expression in text and return them (or one group)."""
    try:
        compiled = re.compile(pattern, re.IGNORECASE if ignore_case else 0)
    except re.error as exc:
        raise ToolFailedError(f"invalid regular expression: {exc}") from None
    if group > compiled.groups:
        raise ToolFailedError(f"the pattern has {compiled.groups} groups, not {group}")
    matches: list[str | None] = []
    for m in compiled.finditer(text):
        if len(matches) >= max_matches:
            return {"matches": matches, "truncated": True}
        matches.append(m.group(group))
    return {"matches": matches, "truncated": False}


TOOLS = [json_extract, text_transform, regex_extract]
