"""The calculator evaluates arithmetic and refuses everything else, clearly."""

from __future__ import annotations

import math

import pytest

from services.tools.builtins.calculator import calculator, evaluate
from services.tools.errors import ToolFailedError

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("7 / 2", 3.5),
        ("7 // 2", 3),
        ("-7 % 3", 2),
        ("2 ** 10", 1024),
        ("2 ** -1", 0.5),
        ("-(3) + +4", 1),
        ("sqrt(16) + log(e) + log(8, 2)", 8.0),
        ("max(1, 5, 3) - min(4, 2)", 3),
        ("round(pi, 2)", 3.14),
        ("factorial(5)", 120),
        ("cos(0) + sin(0)", 1.0),
        ("1.5e3", 1500.0),
        ("  2*3  ", 6),
    ],
)
def test_arithmetic(expression: str, expected: float) -> None:
    result = evaluate(expression)
    assert math.isclose(result, expected)
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("__import__('os')", "unknown function '__import__'"),
        ("__import__('os').system('true')", "unknown function 'Attribute'"),
        ("9**9**9", "exponent 387420489 too large"),
        ("2**100000", "too large"),
        ("2**5000", "exceed 4096 bits"),
        ("(2**4000) * (2**4000)", "exceed 4096 bits"),
        ("10.0 ** 400", "result too large"),
        ("(1).real", "Attribute is not allowed"),
        ("().__class__", "Attribute is not allowed"),
        ("x + 1", "unknown name 'x'"),
        ("os", "unknown name 'os'"),
        ("'a' * 3", "only numbers"),
        ("True + 1", "only numbers"),
        ("[1, 2]", "List is not allowed"),
        ("lambda: 1", "Lambda is not allowed"),
        ("1 if 1 else 2", "IfExp is not allowed"),
        ("1 < 2", "Compare is not allowed"),
        ("1 << 2", "BinOp is not allowed"),
        ("sqrt(x=4)", "keyword arguments"),
        ("abs(*[1])", "Starred is not allowed"),
        ("1 / 0", "division by zero"),
        ("5 % 0", "division by zero"),
        ("sqrt(-1)", "sqrt(): math domain error"),
        ("(-8) ** 0.5", "not a real number"),
        ("factorial(10000)", "factorial() is limited"),
        ("factorial(2.5)", "whole number"),
        ("min()", "min()"),
        ("exp(1000)", "result too large"),
        ("1 +", "not a valid expression"),
        ("", "not a valid expression"),
        ("1; 2", "not a valid expression"),
        ("1" * 501, "longer than 500"),
        ("abs(" * 60 + "1" + ")" * 60, "nested deeper"),
        ("-" * 120 + "1", "nested deeper"),
        ("1j", "only numbers"),
    ],
)
def test_refusals_are_clear(expression: str, message: str) -> None:
    with pytest.raises(ToolFailedError) as info:
        evaluate(expression)
    assert message in str(info.value)


def test_tool_wraps_the_result() -> None:
    assert calculator(expression="6*7") == {"expression": "6*7", "result": 42}
