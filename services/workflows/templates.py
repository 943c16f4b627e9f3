"""Templates and checks: the few expressions a workflow definition may hold.

Deliberately tiny (no Jinja): a definition comes from operators' YAML and runs
inside the service, so it may only name values (``{{input}}``,
``{{steps.ID.output}}``, ``{{iteration}}``, ``{{workflow_run_id}}``) and test
them (equals, regex, a JSON path). An unknown placeholder is left as written,
so a typo shows up in the agent's input instead of silently vanishing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from schemas.workflows import Check

__all__ = ["Scope", "evaluate", "extract", "parse_yes", "render", "render_value"]

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_.-]+)\s*\}\}")
_PATH_PART = re.compile(r"\.([A-Za-z0-9_-]+)|\[([0-9]+)\]")
_YES = re.compile(r"^\W*(yes|true|y)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Scope:
    """The values a template may name."""

    input: str
    outputs: Mapping[str, str] = field(default_factory=dict)
    iteration: int = 0
    workflow_run_id: str = ""


def render(template: str, scope: Scope) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "input":
            return scope.input
        if name == "iteration":
            return str(scope.iteration)
        if name == "workflow_run_id":
            return scope.workflow_run_id
        parts = name.split(".")
        if len(parts) == 3 and parts[0] == "steps" and parts[2] == "output":
            return scope.outputs.get(parts[1], "")
        return match.group(0)

    return _PLACEHOLDER.sub(value, template)


def render_value(value: Any, scope: Scope) -> Any:
    """Render every string inside a JSON value (tool arguments)."""
    if isinstance(value, str):
        return render(value, scope)
    if isinstance(value, dict):
        return {k: render_value(v, scope) for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, scope) for v in value]
    return value


_MISSING = object()


def extract(text: str, path: str) -> Any:
    """``$.a.b[0]`` applied to ``text`` parsed as JSON; a miss is ``None``."""
    try:
        node: Any = json.loads(text)
    except ValueError:
        return None
    for key, index in _PATH_PART.findall(path[1:]):
        if key and isinstance(node, dict):
            node = node.get(key, _MISSING)
        elif index and isinstance(node, list) and int(index) < len(node):
            node = node[int(index)]
        else:
            return None
        if node is _MISSING:
            return None
    return node


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def evaluate(check: Check, value: str) -> bool:
    """A check that needs no agent: equals, regex, JSON path (alone: truthy)."""
    subject: Any = value
    if check.json_path is not None:
        subject = extract(value, check.json_path)
        if check.equals is None and check.regex is None:
            return bool(subject) != check.negate
        if subject is None:
            return check.negate
    text = _as_text(subject)
    if check.equals is not None:
        held = text.strip() == check.equals.strip()
    else:
        assert check.regex is not None
        held = re.search(check.regex, text) is not None
    return held != check.negate


def parse_yes(answer: str | None) -> bool:
    """A small agent's yes/no: anything starting with yes/true counts as yes."""
    return bool(answer) and _YES.match(answer or "") is not None
