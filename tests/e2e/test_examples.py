"""Every example under ``examples/`` runs against the whole system and shows what it says.

One stack (every service its own process, the scripted model) is started for
the module; each example then runs as a user would run it -- ``python
examples/<name>.py`` in a fresh process -- with only the environment telling
it where Kafka is and which topic prefix to use.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.stack import RunningStack, running_stack
from tests.infra import Infra

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def stack(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    with running_stack(infra, tmp_path_factory.mktemp("examples-stack"), prefix_stem="ex") as running:
        yield running


def run_example(stack: RunningStack, name: str, *args: str, env: dict[str, str] | None = None,
                timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(EXAMPLES / name), *args], env=env or stack.env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def ok(stack: RunningStack, result: subprocess.CompletedProcess[str]) -> str:
    """The example's stdout, after checking it exited 0 (else show why, with the service logs)."""
    assert result.returncode == 0, (f"exit {result.returncode}\n{result.stdout[-3000:]}\n"
                                    f"{result.stderr[-3000:]}\n{stack.log_tail()}")
    return result.stdout


def test_examples_readme_lists_every_example() -> None:
    listed = (EXAMPLES / "README.md").read_text()
    scripts = sorted(p.name for p in EXAMPLES.iterdir()
                     if p.suffix in (".py", ".sh") and not p.name.startswith("_"))
    assert scripts, "no examples found"
    for name in scripts:
        assert name in listed, f"examples/README.md does not mention {name}"


def test_single_agent_tools(stack: RunningStack) -> None:
    out = ok(stack, run_example(stack, "single_agent_tools.py"))
    assert "tool call  calculator(expression=…)" in out
    assert "tool done  calculator -> ok" in out
    assert "answer: 37 boxes of 24 hold 888 eggs." in out


def test_research_team(stack: RunningStack) -> None:
    out = ok(stack, run_example(stack, "research_team.py"))
    assert "[team] delegated  to researcher" in out
    assert "[researcher] tool done  knowledge_search -> ok" in out
    assert "answer: For 6 guests buy 720 g of dry pasta" in out
    assert "Pinot Noir" in out


def test_learning_preferences(stack: RunningStack) -> None:
    out = ok(stack, run_example(stack, "learning_preferences.py"))
    assert "memory: memory.learned" in out
    assert "preference:spicy food" in out
    assert "assistant > Since you love spicy food" in out


def test_approval_gated_tool(stack: RunningStack) -> None:
    out = ok(stack, run_example(stack, "approval_gated_tool.py"))
    lines = out.splitlines()
    waiting = next(i for i, line in enumerate(lines) if line.startswith("waiting    for approval"))
    approved = next(i for i, line in enumerate(lines) if line.startswith("operator > approve http_fetch"))
    fetched = next(i for i, line in enumerate(lines) if line == "tool done  http_fetch -> ok")
    assert waiting < approved < fetched
    assert "answer: The release notes say version 2.0" in out


def test_plain_aiokafka_run(stack: RunningStack) -> None:
    out = ok(stack, run_example(stack, "plain_aiokafka_run.py"))
    assert "RunCompleted from mindstream/reasoning" in out
    assert ("completed: Hello! I am the assistant agent, answering a request you published "
            "with plain Kafka.") in out


def test_audit_consumer_reads_the_trail(stack: RunningStack) -> None:
    # Runs after the examples above (file order), so their runs are in the trail.
    out = ok(stack, run_example(stack, "audit_consumer.py", "--max", "4", "--timeout", "20",
                                "--action", "run."))
    actions = re.findall(r"^\S+Z  \S+ +(run\.[a-z_.]+) ", out, re.M)
    assert len(actions) == 4, out
    assert "ce_source=mindstream/reasoning" in out
    assert "4 record(s)" in out
    bounded = ok(stack, run_example(stack, "audit_consumer.py", "--max", "2", "--timeout", "5"))
    assert "2 record(s)" in bounded


def test_examples_fail_readably_without_the_system(stack: RunningStack) -> None:
    elsewhere = {**stack.env, "MINDSTREAM_TOPIC_PREFIX": "nothing-here."}
    result = run_example(stack, "single_agent_tools.py", env=elsewhere)
    assert result.returncode == 1
    assert "single_agent_tools: FAILED: no topic nothing-here.mindstream.runs.requested.v1" in result.stderr
    assert "Traceback" not in result.stderr
    audit = run_example(stack, "audit_consumer.py", env=elsewhere)
    assert audit.returncode == 1
    assert "no topic nothing-here.mindstream.audit.v1" in audit.stderr
