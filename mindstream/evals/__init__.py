"""Evals: run a suite of cases through the real pipeline and score the answers.

See :mod:`mindstream.evals.suite` for the file format and ``mindstream eval run``.
"""

from mindstream.evals.checks import CaseResult, Grade, Observation, ObservedCall, score_case
from mindstream.evals.runner import EvalReport, run_suite
from mindstream.evals.scoring import Verdict, summarise
from mindstream.evals.suite import Suite, SuiteError, load_suite, parse_suite

__all__ = [
    "CaseResult",
    "EvalReport",
    "Grade",
    "Observation",
    "ObservedCall",
    "Suite",
    "SuiteError",
    "Verdict",
    "load_suite",
    "parse_suite",
    "run_suite",
    "score_case",
    "summarise",
]
