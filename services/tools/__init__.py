"""The tool-execution service: registry, executor and sandbox for agent tools.

Names are loaded on first use: a sandbox subprocess imports only the
registry, and every millisecond of its start-up is paid per sandboxed call.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from services.tools.executor import ExecutionOutcome, ExecutionRequest, Executor
    from services.tools.registry import (
        RecoveryPolicy,
        SandboxLimits,
        ToolRegistry,
        ToolSpec,
        describe,
        discover,
        tool,
    )

_WHERE = {
    "ExecutionOutcome": "services.tools.executor",
    "ExecutionRequest": "services.tools.executor",
    "Executor": "services.tools.executor",
    "RecoveryPolicy": "services.tools.registry",
    "SandboxLimits": "services.tools.registry",
    "ToolRegistry": "services.tools.registry",
    "ToolSpec": "services.tools.registry",
    "describe": "services.tools.registry",
    "discover": "services.tools.registry",
    "tool": "services.tools.registry",
}

__all__ = [
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


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'services.tools' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
