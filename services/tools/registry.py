"""Tools are plain Python functions; the registry turns them into something a
model can call safely.

A tool's typed signature is its contract: the parameters become a pydantic
model (arguments are validated before the function runs) and the JSON
schema the model sees. Everything operational — timeout, concurrency,
retries, approval, side effects, sandboxing — is declared next to the
function, so the executor can enforce it without knowing the tool.

How a module contributes tools (one rule, used by :func:`discover`):

    a module lists its tools in a module-level ``TOOLS``: either a sequence
    of ``@tool``-decorated functions, or a callable ``TOOLS(config)`` that
    takes the module's configuration mapping and returns such a sequence
    (for tools that need settings, such as an HTTP allowlist).

``@tool`` only *describes* a function (it returns the function unchanged,
with its :class:`ToolSpec` attached), so importing a module never mutates
global state and the same module can feed several registries, e.g. in tests.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar, get_type_hints, overload

from pydantic import BaseModel, ConfigDict, create_model
from pydantic.fields import FieldInfo

from services.tools.errors import RegistryError, ToolNotFoundError
from shared.resilience import RetryPolicy

__all__ = [
    "NO_RETRY",
    "RecoveryPolicy",
    "SandboxLimits",
    "ToolRegistry",
    "ToolSpec",
    "describe",
    "discover",
    "spec_of",
    "tool",
]

F = TypeVar("F", bound=Callable[..., Any])

SPEC_ATTR = "__mindstream_tool__"
NO_RETRY = RetryPolicy(max_attempts=1)
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # what OpenAI accepts for function names


class RecoveryPolicy(StrEnum):
    """What to do with a call found started but unfinished after a crash."""

    RETRY = "retry"
    FAIL = "fail"


@dataclass(frozen=True)
class SandboxLimits:
    """Limits for a tool run in a subprocess (``sandbox=True`` uses the defaults)."""

    cpu_seconds: int = 5
    memory_mb: int = 512
    max_output_bytes: int = 1_000_000

    def __post_init__(self) -> None:
        if self.cpu_seconds < 1 or self.memory_mb < 64 or self.max_output_bytes < 1024:
            raise RegistryError(
                "sandbox limits too small: cpu_seconds >= 1, memory_mb >= 64, "
                "max_output_bytes >= 1024"
            )


@dataclass(frozen=True)
class ToolSpec:
    """Everything the executor needs to know about one tool."""

    name: str
    description: str
    fn: Callable[..., Any]
    params_model: type[BaseModel]
    timeout_s: float = 30.0
    max_concurrency: int = 8
    retry: RetryPolicy = NO_RETRY
    requires_approval: bool = False
    side_effecting: bool = False
    idempotent: bool = True
    sandbox: SandboxLimits | None = None
    is_async: bool = field(default=False)

    @property
    def recovery(self) -> RecoveryPolicy:
        """A crash left this call half done: re-running is only safe if idempotent."""
        return RecoveryPolicy.RETRY if self.idempotent else RecoveryPolicy.FAIL

    @property
    def import_path(self) -> str:
        """``module:qualname`` by which a sandbox subprocess finds the function."""
        return f"{self.fn.__module__}:{self.fn.__qualname__}"

    def parameters_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = _strip_titles(self.params_model.model_json_schema())
        return schema

    def openai_schema(self) -> dict[str, Any]:
        """The tool as the model sees it (OpenAI function-tool format)."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters_schema(),
            },
        }


@overload
def tool(fn: F, /) -> F: ...


@overload
def tool(
    *,
    name: str | None = ...,
    description: str | None = ...,
    timeout_s: float = ...,
    max_concurrency: int = ...,
    retry: RetryPolicy = ...,
    requires_approval: bool = ...,
    side_effecting: bool = ...,
    idempotent: bool | None = ...,
    sandbox: bool | SandboxLimits = ...,
) -> Callable[[F], F]: ...


def tool(
    fn: F | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout_s: float = 30.0,
    max_concurrency: int = 8,
    retry: RetryPolicy = NO_RETRY,
    requires_approval: bool = False,
    side_effecting: bool = False,
    idempotent: bool | None = None,
    sandbox: bool | SandboxLimits = False,
) -> F | Callable[[F], F]:
    """Describe a function as a tool; usable bare (``@tool``) or with options.

    ``retry`` applies only to :class:`~services.tools.errors.TransientToolError`.
    ``idempotent`` defaults to ``not side_effecting``: it decides whether a call
    interrupted by a crash is re-run or failed (:attr:`ToolSpec.recovery`).
    """

    def decorate(f: F) -> F:
        spec = build_spec(
            f,
            name=name,
            description=description,
            timeout_s=timeout_s,
            max_concurrency=max_concurrency,
            retry=retry,
            requires_approval=requires_approval,
            side_effecting=side_effecting,
            idempotent=idempotent,
            sandbox=sandbox,
        )
        setattr(f, SPEC_ATTR, spec)
        return f

    return decorate(fn) if fn is not None else decorate


def build_spec(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    description: str | None = None,
    timeout_s: float = 30.0,
    max_concurrency: int = 8,
    retry: RetryPolicy = NO_RETRY,
    requires_approval: bool = False,
    side_effecting: bool = False,
    idempotent: bool | None = None,
    sandbox: bool | SandboxLimits = False,
) -> ToolSpec:
    tool_name = fn.__name__ if name is None else name
    where = f"tool {tool_name!r} ({getattr(fn, '__module__', '?')})"
    if not _NAME_RE.match(tool_name):
        raise RegistryError(f"{where}: name must match {_NAME_RE.pattern}")
    if timeout_s <= 0:
        raise RegistryError(f"{where}: timeout_s must be positive")
    if max_concurrency < 1:
        raise RegistryError(f"{where}: max_concurrency must be at least 1")
    text = description if description is not None else _first_paragraph(fn)
    if not text:
        raise RegistryError(f"{where}: needs a description (argument or docstring)")
    limits = SandboxLimits() if sandbox is True else (sandbox or None)
    if limits is not None and ("<locals>" in fn.__qualname__ or fn.__module__ == "__main__"):
        raise RegistryError(f"{where}: a sandboxed tool must be a module-level function")
    return ToolSpec(
        name=tool_name,
        description=text,
        fn=fn,
        params_model=params_model_for(fn, tool_name),
        timeout_s=timeout_s,
        max_concurrency=max_concurrency,
        retry=retry,
        requires_approval=requires_approval,
        side_effecting=side_effecting,
        idempotent=(not side_effecting) if idempotent is None else idempotent,
        sandbox=limits,
        is_async=inspect.iscoroutinefunction(fn),
    )


def params_model_for(fn: Callable[..., Any], tool_name: str) -> type[BaseModel]:
    """A pydantic model of ``fn``'s parameters (annotations, defaults, Field metadata)."""
    try:
        hints = get_type_hints(fn, include_extras=True)
    except Exception as exc:
        raise RegistryError(f"tool {tool_name!r}: cannot resolve annotations: {exc}") from exc
    fields: dict[str, Any] = {}
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
            raise RegistryError(
                f"tool {tool_name!r}: parameter {param.name!r} must be a named parameter "
                "(no *args, **kwargs or positional-only)"
            )
        if param.name.startswith("_"):
            raise RegistryError(f"tool {tool_name!r}: parameter {param.name!r} starts with '_'")
        if param.name not in hints:
            raise RegistryError(f"tool {tool_name!r}: parameter {param.name!r} needs a type")
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (hints[param.name], default)
    try:
        return create_model(
            f"{tool_name}_arguments",
            __config__=ConfigDict(extra="forbid"),
            **fields,
        )
    except Exception as exc:
        raise RegistryError(f"tool {tool_name!r}: unusable parameters: {exc}") from exc


def spec_of(obj: Any) -> ToolSpec:
    """The spec of a ``@tool`` function (or a spec itself)."""
    if isinstance(obj, ToolSpec):
        return obj
    spec = getattr(obj, SPEC_ATTR, None)
    if not isinstance(spec, ToolSpec):
        raise RegistryError(f"{obj!r} is not a tool: decorate it with @tool")
    return spec


class ToolRegistry:
    """The tools one service instance offers, by name."""

    def __init__(self, tools: Iterable[Any] = ()) -> None:
        self._specs: dict[str, ToolSpec] = {}
        for t in tools:
            self.register(t)

    def register(self, obj: Any) -> ToolSpec:
        spec = spec_of(obj)
        existing = self._specs.get(spec.name)
        if existing is not None and existing.fn is not spec.fn:
            raise RegistryError(
                f"duplicate tool name {spec.name!r}: {existing.import_path} and {spec.import_path}"
            )
        self._specs[spec.name] = spec
        return spec

    def tool(self, fn: F | None = None, /, **options: Any) -> Any:
        """Like :func:`tool`, and also register the function here."""

        def decorate(f: F) -> F:
            decorated = tool(**options)(f)
            self.register(decorated)
            return decorated

        return decorate(fn) if fn is not None else decorate

    def get(self, name: str) -> ToolSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise ToolNotFoundError(f"no tool named {name!r}") from None

    def names(self) -> list[str]:
        return sorted(self._specs)

    def schemas(self, names: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Model-facing schemas, for all tools or the given names (unknown ones skipped)."""
        wanted = self.names() if names is None else [n for n in names if n in self._specs]
        return [self._specs[n].openai_schema() for n in wanted]

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[ToolSpec]:
        return iter(self._specs[n] for n in self.names())

    def __len__(self) -> int:
        return len(self._specs)


def discover(
    modules: Sequence[str],
    *,
    config: Mapping[str, Mapping[str, Any]] | None = None,
    registry: ToolRegistry | None = None,
) -> ToolRegistry:
    """Import each module and register its ``TOOLS`` (see the module docstring).

    ``config`` maps a module name to the mapping passed to its ``TOOLS``
    factory. Any problem is a :class:`RegistryError` naming the module, so a
    misconfigured service fails at start with one clear line.
    """
    reg = registry if registry is not None else ToolRegistry()
    config = config or {}
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise RegistryError(f"cannot import tool module {module_name!r}: {exc}") from exc
        exported = getattr(module, "TOOLS", None)
        if exported is None:
            raise RegistryError(f"tool module {module_name!r} has no TOOLS")
        if callable(exported):
            try:
                exported = exported(dict(config.get(module_name, {})))
            except RegistryError:
                raise
            except Exception as exc:
                raise RegistryError(f"TOOLS factory of {module_name!r} failed: {exc}") from exc
        if isinstance(exported, str | bytes) or not isinstance(exported, Iterable):
            raise RegistryError(f"TOOLS of {module_name!r} must be a list of tools")
        for t in exported:
            reg.register(t)
    return reg


def describe(registry: ToolRegistry) -> list[dict[str, Any]]:
    """One row per tool for ``mindstream tools list``."""
    rows: list[dict[str, Any]] = []
    for spec in registry:
        schema = spec.parameters_schema()
        required = set(schema.get("required", []))
        params = []
        for pname, info in spec.params_model.model_fields.items():
            params.append(
                {
                    "name": pname,
                    "type": _type_label(schema.get("properties", {}).get(pname, {})),
                    "required": pname in required,
                    "default": None if info.is_required() else _jsonable_default(info),
                    "description": info.description or "",
                }
            )
        rows.append(
            {
                "name": spec.name,
                "description": spec.description,
                "params": params,
                "timeout_s": spec.timeout_s,
                "max_concurrency": spec.max_concurrency,
                "retry_attempts": spec.retry.max_attempts,
                "flags": {
                    "requires_approval": spec.requires_approval,
                    "side_effecting": spec.side_effecting,
                    "idempotent": spec.idempotent,
                    "sandbox": spec.sandbox is not None,
                },
            }
        )
    return rows


def _first_paragraph(fn: Callable[..., Any]) -> str:
    doc = inspect.getdoc(fn) or ""
    return " ".join(doc.strip().split("\n\n", 1)[0].split())


def _strip_titles(node: Any) -> Any:
    """Drop pydantic's auto titles: noise in every prompt, never information."""
    if isinstance(node, list):
        return [_strip_titles(v) for v in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title" and isinstance(value, str):
            continue
        if key in ("properties", "$defs", "definitions", "patternProperties") and isinstance(
            value, dict
        ):
            out[key] = {k: _strip_titles(v) for k, v in value.items()}
        else:
            out[key] = _strip_titles(value)
    return out


def _type_label(prop: Mapping[str, Any]) -> str:
    label = "any"
    if "enum" in prop:
        label = "enum(" + ", ".join(map(str, prop["enum"])) + ")"
    elif "type" in prop:
        label = str(prop["type"])
        if label == "array" and isinstance(prop.get("items"), dict):
            label = f"array[{_type_label(prop['items'])}]"
    elif "anyOf" in prop or "oneOf" in prop:
        label = " | ".join(_type_label(p) for p in prop.get("anyOf", prop.get("oneOf", [])))
    elif "$ref" in prop:
        label = str(prop["$ref"]).rsplit("/", 1)[-1]
    elif "const" in prop:
        label = repr(prop["const"])
    return label


def _jsonable_default(info: FieldInfo) -> Any:
    value = info.get_default(call_default_factory=True)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)
