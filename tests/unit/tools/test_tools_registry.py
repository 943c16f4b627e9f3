"""The registry turns typed functions into validated, model-facing tools."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, Field, ValidationError

from services.tools import registry as registry_module
from services.tools.errors import RegistryError, ToolNotFoundError
from services.tools.registry import (
    RecoveryPolicy,
    SandboxLimits,
    ToolRegistry,
    describe,
    discover,
    spec_of,
    tool,
)
from shared.resilience import RetryPolicy

pytestmark = pytest.mark.unit


class Point(BaseModel):
    x: int
    y: int


@tool
def search(
    query: Annotated[str, Field(description="What to look for")],
    limit: int = 5,
    mode: Literal["fast", "deep"] = "fast",
    tags: list[str] | None = None,
) -> list[str]:
    """Search the catalogue for matching items.

    This second paragraph is for humans, not for the model.
    """
    return [query] * limit


@tool(name="move-point", description="Move a point.", side_effecting=True, timeout_s=1.5)
async def move(point: Point, dx: int) -> Point:
    return Point(x=point.x + dx, y=point.y)


def test_schema_is_built_from_the_signature() -> None:
    schema = spec_of(search).openai_schema()
    assert schema["type"] == "function"
    fn = schema["function"]
    assert fn["name"] == "search"
    assert fn["description"] == "Search the catalogue for matching items."
    params = fn["parameters"]
    assert params["type"] == "object"
    assert params["required"] == ["query"]
    assert params["additionalProperties"] is False
    props = params["properties"]
    assert props["query"] == {"type": "string", "description": "What to look for"}
    assert props["limit"] == {"type": "integer", "default": 5}
    assert props["mode"]["enum"] == ["fast", "deep"]
    assert props["mode"]["default"] == "fast"
    assert {"type": "null"} in props["tags"]["anyOf"]
    assert "title" not in params
    assert all("title" not in p for p in props.values())


def test_nested_models_keep_property_named_title() -> None:
    @tool
    def publish(title: str, body: str) -> str:
        """Publish a note."""
        return title + body

    props = spec_of(publish).parameters_schema()["properties"]
    assert set(props) == {"title", "body"}


def test_options_and_nested_model_parameters() -> None:
    spec = spec_of(move)
    assert spec.name == "move-point"
    assert spec.description == "Move a point."
    assert spec.is_async
    assert spec.timeout_s == 1.5
    assert spec.side_effecting
    assert not spec.idempotent
    assert spec.recovery is RecoveryPolicy.FAIL
    params = spec.parameters_schema()
    assert params["required"] == ["point", "dx"]
    assert "Point" in params["$defs"]
    args = spec.params_model.model_validate({"point": {"x": 1, "y": 2}, "dx": 3})
    assert args.point == Point(x=1, y=2)  # type: ignore[attr-defined]


def test_params_model_validates_and_forbids_extras() -> None:
    model = spec_of(search).params_model
    assert model.model_validate({"query": "q"}).limit == 5  # type: ignore[attr-defined]
    with pytest.raises(ValidationError):
        model.model_validate({"query": "q", "unknown": 1})
    with pytest.raises(ValidationError):
        model.model_validate({"query": "q", "mode": "slow"})


def test_idempotency_defaults_and_recovery_policy() -> None:
    def f(x: int) -> int:
        """F."""
        return x

    assert spec_of(tool(f)).recovery is RecoveryPolicy.RETRY
    assert spec_of(tool(side_effecting=True)(f)).recovery is RecoveryPolicy.FAIL
    explicit = spec_of(tool(side_effecting=True, idempotent=True)(f))
    assert explicit.recovery is RecoveryPolicy.RETRY


def test_decorator_returns_the_function_unchanged() -> None:
    assert search("a", limit=2) == ["a", "a"]


@pytest.mark.parametrize(
    ("fn_source", "message"),
    [
        ("def f(x):\n    '''Doc.'''", "needs a type"),
        ("def f(*args: int):\n    '''Doc.'''", "named parameter"),
        ("def f(**kw: int):\n    '''Doc.'''", "named parameter"),
        ("def f(x: int, /):\n    '''Doc.'''", "named parameter"),
        ("def f(_x: int):\n    '''Doc.'''", "starts with '_'"),
        ("def f(x: int):\n    pass", "needs a description"),
        ("def f(x: 'NoSuchType'):\n    '''Doc.'''", "cannot resolve annotations"),
    ],
)
def test_unusable_signatures_are_refused_at_definition(fn_source: str, message: str) -> None:
    namespace: dict[str, object] = {}
    exec(fn_source, namespace)  # noqa: S102 - builds signatures a decorator must refuse
    with pytest.raises(RegistryError, match=message):
        tool(namespace["f"])  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["has space", "", "x" * 65, "dots.not.allowed"])
def test_invalid_names_are_refused(name: str) -> None:
    def f(x: int) -> int:
        """Doc."""
        return x

    with pytest.raises(RegistryError, match="name must match"):
        tool(name=name)(f)


def test_bad_limits_are_refused() -> None:
    def f(x: int) -> int:
        """Doc."""
        return x

    with pytest.raises(RegistryError, match="timeout_s"):
        tool(timeout_s=0)(f)
    with pytest.raises(RegistryError, match="max_concurrency"):
        tool(max_concurrency=0)(f)
    with pytest.raises(RegistryError, match="too small"):
        SandboxLimits(memory_mb=1)


def test_sandboxed_tool_must_be_importable() -> None:
    def local(x: int) -> int:
        """Doc."""
        return x

    with pytest.raises(RegistryError, match="module-level"):
        tool(sandbox=True)(local)


def test_registry_register_get_and_duplicates() -> None:
    reg = ToolRegistry([search, move])
    assert reg.names() == ["move-point", "search"]
    assert "search" in reg
    assert len(reg) == 2
    assert reg.get("search").fn is search
    with pytest.raises(ToolNotFoundError):
        reg.get("nope")
    reg.register(search)  # same function again is harmless

    def other(q: str) -> str:
        """Another search."""
        return q

    with pytest.raises(RegistryError, match="duplicate tool name 'search'"):
        reg.register(tool(name="search")(other))

    def plain(q: str) -> str:
        return q

    with pytest.raises(RegistryError, match="not a tool"):
        reg.register(plain)


def test_registry_decorator_registers() -> None:
    reg = ToolRegistry()

    @reg.tool(retry=RetryPolicy(max_attempts=2))
    def ping() -> str:
        """Answer pong."""
        return "pong"

    assert reg.get("ping").retry.max_attempts == 2
    assert ping() == "pong"
    assert reg.schemas(["ping", "absent"]) == [reg.get("ping").openai_schema()]


def _write_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> str:
    name = f"tools_mod_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    return name


LIST_MODULE = '''
from services.tools.registry import tool

@tool
def hello(name: str) -> str:
    """Say hello."""
    return "hello " + name

TOOLS = [hello]
'''

FACTORY_MODULE = '''
from services.tools.registry import tool

def TOOLS(config):
    greeting = config["greeting"]

    @tool(name="greet")
    def greet(name: str) -> str:
        """Greet someone."""
        return greeting + " " + name

    return [greet]
'''


def test_discover_list_and_factory_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    listed = _write_module(tmp_path, monkeypatch, LIST_MODULE)
    factory = _write_module(tmp_path, monkeypatch, FACTORY_MODULE)
    reg = discover([listed, factory], config={factory: {"greeting": "hi"}})
    assert reg.names() == ["greet", "hello"]
    assert reg.get("greet").fn(name="ada") == "hi ada"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("X = 1\n", "has no TOOLS"),
        ("TOOLS = 'calculator'\n", "must be a list"),
        ("raise RuntimeError('boom')\n", "cannot import tool module"),
        ("def TOOLS(config):\n    return config['missing']\n", "TOOLS factory .* failed"),
        ("TOOLS = [print]\n", "not a tool"),
    ],
)
def test_discover_reports_bad_modules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str, message: str
) -> None:
    name = _write_module(tmp_path, monkeypatch, body)
    with pytest.raises(RegistryError, match=message):
        discover([name])


def test_discover_unknown_module() -> None:
    with pytest.raises(RegistryError, match="cannot import tool module 'no_such_mod_xyz'"):
        discover(["no_such_mod_xyz"])


def test_describe_summarises_each_tool() -> None:
    rows = describe(ToolRegistry([search, move]))
    assert [r["name"] for r in rows] == ["move-point", "search"]
    row = rows[1]
    assert row["description"] == "Search the catalogue for matching items."
    assert row["flags"] == {
        "requires_approval": False,
        "side_effecting": False,
        "idempotent": True,
        "sandbox": False,
    }
    params = {p["name"]: p for p in row["params"]}
    assert params["query"] == {
        "name": "query",
        "type": "string",
        "required": True,
        "default": None,
        "description": "What to look for",
    }
    assert params["limit"]["default"] == 5
    assert params["mode"]["type"] == "enum(fast, deep)"
    assert params["tags"]["type"] == "array[string] | null"
    assert rows[0]["params"][0]["type"] == "Point"
    assert rows[0]["flags"]["side_effecting"] is True


def test_public_surface_is_pinned() -> None:
    assert sorted(registry_module.__all__) == [
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
