"""The error tree: every class maps to one code and one retry decision."""

from __future__ import annotations

import pytest

from services import tools
from services.tools import errors

pytestmark = pytest.mark.unit


def test_every_tool_error_has_a_distinct_code() -> None:
    classes = [
        getattr(errors, name)
        for name in errors.__all__
        if isinstance(getattr(errors, name), type)
        and issubclass(getattr(errors, name), errors.ToolError)
        and getattr(errors, name) not in (errors.ToolError, errors.SandboxError)
    ]
    codes = [c.code for c in classes]
    assert len(codes) == len(set(codes))
    assert {c.code for c in classes} | {
        errors.ErrorCode.CIRCUIT_OPEN,
        errors.ErrorCode.INTERNAL_ERROR,
    } == set(errors.ErrorCode)


def test_only_transient_errors_are_retried() -> None:
    retryable = [
        name
        for name in errors.__all__
        if isinstance(getattr(errors, name), type)
        and issubclass(getattr(errors, name), errors.ToolError)
        and getattr(errors, name).retryable
    ]
    assert retryable == ["TransientToolError"]


def test_registry_error_is_not_a_call_error() -> None:
    assert not issubclass(errors.RegistryError, errors.ToolError)


def test_invalid_arguments_carry_fields() -> None:
    assert errors.InvalidArgumentsError("m", ["a"]).fields == ["a"]
    assert errors.InvalidArgumentsError("m").fields == []


def test_package_surface_is_pinned() -> None:
    assert sorted(tools.__all__) == [
        "ExecutionOutcome",
        "ExecutionRequest",
        "Executor",
        "RecoveryPolicy",
        "SandboxLimits",
        "ToolRegistry",
        "ToolSpec",
        "describe",
        "discover",
        "tool",
    ]


def test_package_names_resolve() -> None:
    for name in tools.__all__:
        assert getattr(tools, name) is not None
    with pytest.raises(AttributeError):
        _ = tools.nothing_here  # type: ignore[attr-defined]
