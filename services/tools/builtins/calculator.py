"""Arithmetic for a model, without ``eval``.

The expression is parsed with :mod:`ast` and only numbers, the arithmetic
operators, parentheses, a whitelist of :mod:`math` functions and the
constants ``pi``, ``e``, ``tau`` are evaluated; names, attributes,
subscripts, keywords, strings and everything else are refused. Sizes are
bounded at every step (input length, nesting, exponents, integer bits), so
``9**9**9`` is a clear refusal, not a frozen worker.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import Field

from services.tools.errors import ToolFailedError
from services.tools.registry import tool

__all__ = ["TOOLS", "calculator", "evaluate"]

MAX_EXPRESSION_CHARS = 500
MAX_DEPTH = 50
MAX_EXPONENT = 10_000
MAX_INT_BITS = 4096
MAX_FACTORIAL = 500

Number = int | float

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau}


def _factorial(n: Number) -> int:
    if isinstance(n, float):
        if not n.is_integer():
            raise ToolFailedError("factorial() needs a whole number")
        n = int(n)
    if n > MAX_FACTORIAL:
        raise ToolFailedError(f"factorial() is limited to n <= {MAX_FACTORIAL}")
    return math.factorial(n)


_FUNCTIONS: dict[str, Callable[..., Number]] = {
    "sqrt": math.sqrt,
    "cbrt": lambda x: math.copysign(abs(x) ** (1 / 3), x),
    "exp": math.exp,
    "log": math.log,
    "log10": math.log10,
    "log2": math.log2,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "asin": math.asin,
    "acos": math.acos,
    "atan": math.atan,
    "atan2": math.atan2,
    "sinh": math.sinh,
    "cosh": math.cosh,
    "tanh": math.tanh,
    "hypot": math.hypot,
    "degrees": math.degrees,
    "radians": math.radians,
    "floor": math.floor,
    "ceil": math.ceil,
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
    "factorial": _factorial,
}


def evaluate(expression: str) -> Number:
    """Evaluate ``expression``; raise :class:`ToolFailedError` with a reason on refusal."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ToolFailedError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise ToolFailedError(f"not a valid expression: {exc.msg}") from None
    except (RecursionError, MemoryError, ValueError):
        raise ToolFailedError("expression is too deeply nested or malformed") from None
    return _eval(tree.body, 0)


def _eval(node: ast.AST, depth: int) -> Number:
    if depth > MAX_DEPTH:
        raise ToolFailedError(f"expression nested deeper than {MAX_DEPTH} levels")
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise ToolFailedError(f"only numbers are allowed, not {node.value!r}")
        return _checked(node.value)
    if isinstance(node, ast.Name):
        if node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        raise ToolFailedError(
            f"unknown name {node.id!r}; constants: {', '.join(sorted(_CONSTANTS))}"
        )
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _checked(_UNARY[type(node.op)](_eval(node.operand, depth + 1)))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left = _eval(node.left, depth + 1)
        right = _eval(node.right, depth + 1)
        if isinstance(node.op, ast.Pow):
            _check_power(left, right)
        return _apply(_BINARY[type(node.op)], left, right)
    if isinstance(node, ast.Call):
        return _call(node, depth)
    raise ToolFailedError(
        f"{type(node).__name__} is not allowed; use numbers, operators and math functions only"
    )


def _call(node: ast.Call, depth: int) -> Number:
    if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
        shown = node.func.id if isinstance(node.func, ast.Name) else type(node.func).__name__
        raise ToolFailedError(
            f"unknown function {shown!r}; allowed: {', '.join(sorted(_FUNCTIONS))}"
        )
    if node.keywords:
        raise ToolFailedError("keyword arguments are not allowed")
    if len(node.args) > 10:
        raise ToolFailedError("at most 10 arguments per function")
    args = [_eval(a, depth + 1) for a in node.args]
    return _apply(_FUNCTIONS[node.func.id], *args, name=node.func.id)


def _check_power(base: Number, exponent: Number) -> None:
    if abs(exponent) > MAX_EXPONENT:
        raise ToolFailedError(f"exponent {exponent!r} too large (limit {MAX_EXPONENT})")
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0:
        bits = max(base.bit_length() - 1, 0) * exponent  # lower bound of the result's size
        if bits > MAX_INT_BITS:
            raise ToolFailedError(f"result would exceed {MAX_INT_BITS} bits")


def _apply(fn: Callable[..., Any], *args: Number, name: str | None = None) -> Number:
    label = f"{name}()" if name else "operation"
    try:
        result = fn(*args)
    except ZeroDivisionError:
        raise ToolFailedError("division by zero") from None
    except OverflowError:
        raise ToolFailedError(f"{label}: result too large") from None
    except (ValueError, TypeError) as exc:
        raise ToolFailedError(f"{label}: {exc}") from None
    if isinstance(result, complex):
        raise ToolFailedError(f"{label}: result is not a real number")
    return _checked(result)


def _checked(value: Any) -> Number:
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise ToolFailedError(f"result would exceed {MAX_INT_BITS} bits")
    if isinstance(value, float) and not math.isfinite(value):
        raise ToolFailedError("result is not a finite number")
    if not isinstance(value, int | float):
        raise ToolFailedError("result is not a number")
    return value


@tool(timeout_s=2.0)
def calculator(
    expression: Annotated[
        str,
        Field(
            description="Arithmetic such as '2 * (3 + 4) ** 2 / sqrt(16)'. Operators: "
            "+ - * / // % **; functions: sqrt, log, sin, cos, ...; constants: pi, e.",
            max_length=MAX_EXPRESSION_CHARS,
        ),
    ],
) -> dict[str, Any]:
    """Evaluate an arithmetic expression exactly as written and return the number."""
    return {"expression": expression, "result": evaluate(expression)}


TOOLS = [calculator]
