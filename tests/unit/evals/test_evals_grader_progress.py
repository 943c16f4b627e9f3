"""The grader over a real OpenAI-compatible endpoint (the scripted model), and the progress line."""

from __future__ import annotations

import io

import pytest

from mindstream.evals.grader import OpenAIGrader, parse_grade
from mindstream.evals.progress import Progress
from mindstream.testing.scripted_model import ScriptedModelServer

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("text", "passed", "reason"), [
    ('{"pass": true, "reason": "fine"}', True, "fine"),
    ('Sure! ```json\n{"pass": false, "reason": "wrong"}\n```', False, "wrong"),
    ("yes it passes", False, "not a JSON verdict"),
    ('{"pass": "yes"}', False, "no boolean 'pass'"),
    ("{not json}", False, "not a JSON verdict"),
])
def test_parse_grade_never_passes_on_doubt(text: str, passed: bool, reason: str) -> None:
    grade = parse_grade(text)
    assert grade.passed is passed
    assert reason in grade.reason


async def test_openai_grader_asks_the_endpoint() -> None:
    script = {"rules": [
        {"match": {"system": "You grade", "last_user": "(?s)Assistant's answer:\\s*391"},
         "text": '{"pass": true, "reason": "correct product"}'},
        {"match": {"system": "You grade"}, "text": '{"pass": false, "reason": "not 391"}'},
    ]}
    async with ScriptedModelServer(script) as server:
        grader = OpenAIGrader(base_url=server.base_url, model="scripted")
        try:
            assert (await grader("gives 391", "17*23?", "391")).passed
            bad = await grader("gives 391", "17*23?", "400")
            assert not bad.passed and bad.reason == "not 391"
        finally:
            await grader.aclose()


def test_progress_redraws_on_a_terminal_and_prints_sparse_lines_otherwise() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    bar = Progress(4, tty, width=4)
    for ok in (True, False, True, True):
        bar.advance(passed=ok)
    assert tty.getvalue().count("\r") == 4
    assert tty.getvalue().endswith("eval [####] 4/4  passed 3  failed 1\n")

    plain = io.StringIO()
    many = Progress(100, plain)
    for _ in range(100):
        many.advance(passed=True)
    lines = plain.getvalue().splitlines()
    assert 10 <= len(lines) <= 11 and lines[-1].endswith("100/100  passed 100  failed 0")
