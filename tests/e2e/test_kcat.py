"""docs/publishing.md, checked: its commands run as written and its JSON is the contract.

The doc marks what is checked, just above each fenced block:

- ``<!-- file: PATH -->``: the block is that file verbatim (the file is what runs);
- ``<!-- run: NAME -->``: bash written for a local system without topic prefix;
  run here against a fresh system, with only its bootstrap servers and topic
  prefix substituted;
- ``<!-- body: Message -->``: JSON that must validate as that message.

The runs need ``kcat`` (Debian/Ubuntu package ``kcat``) and skip without it;
the rest needs nothing but the files.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from schemas.base import Message
from schemas.envelope import Envelope
from schemas.runs import RunCommand, RunCompleted, RunRequested
from tests.e2e.stack import RunningStack, running_stack
from tests.infra import Infra

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "publishing.md"
BODIES: dict[str, type[Message]] = {
    "RunRequested": RunRequested, "RunCompleted": RunCompleted, "RunCommand": RunCommand}
_BLOCK = re.compile(r"<!-- (file|run|body): (\S+) -->\n```[a-z]*\n(.*?)```", re.S)

needs_kcat = pytest.mark.skipif(shutil.which("kcat") is None,
                                reason="kcat is not installed (Debian/Ubuntu: apt-get install kcat)")


def blocks(kind: str) -> dict[str, str]:
    found = {name: body for k, name, body in _BLOCK.findall(DOC.read_text()) if k == kind}
    assert found, f"docs/publishing.md has no <!-- {kind}: ... --> block"
    return found


def localize(block: str, stack: RunningStack) -> str:
    """The documented command, aimed at this test's system instead of a local default one."""
    assert "-b 127.0.0.1:9092 " in block and " -t mindstream." in block, block
    return (block.replace("-b 127.0.0.1:9092 ", f"-b {stack.bootstrap} ")
            .replace(" -t mindstream.", f" -t {stack.prefix}mindstream."))


def bash(script: str, stack: RunningStack, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=stack.env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, check=False)


def until_ok(script: str, stack: RunningStack, *, within_s: float = 60) -> str:
    """Run ``script`` until it exits 0 (the answer arrived), for at most ``within_s``."""
    deadline = time.monotonic() + within_s
    while True:
        result = bash(script, stack)
        if result.returncode == 0:
            return result.stdout
        if time.monotonic() > deadline:
            pytest.fail(f"`{script}` never succeeded: {result.stderr[-500:]}\n{stack.log_tail()}")
        time.sleep(0.5)  # polling a CLI: there is no event to await


# --- the doc against the files and the contracts (no infrastructure) ----------------------


@pytest.mark.unit
@pytest.mark.parametrize("path", ["examples/kcat_run.sh", "examples/plain_aiokafka_run.py"])
def test_doc_shows_the_example_files_verbatim(path: str) -> None:
    shown = blocks("file")
    assert path in shown, f"docs/publishing.md does not show {path}"
    assert shown[path] == (ROOT / path).read_text(), (
        f"docs/publishing.md shows an old copy of {path}: paste the file into its block")


@pytest.mark.unit
def test_doc_json_bodies_are_valid_messages() -> None:
    for name, body in blocks("body").items():
        BODIES[name].model_validate(json.loads(body))


@pytest.mark.unit
def test_documented_kcat_request_is_a_valid_run_request() -> None:
    publish = blocks("run")["publish"]
    body = re.search(r"echo '(\{.*?\})'", publish)
    assert body is not None
    request = RunRequested.model_validate_json(body.group(1))
    argv = shlex.split(publish.split("|", 1)[1].replace("\\\n", " "))
    headers = [tuple(argv[i + 1].split("=", 1)) for i, arg in enumerate(argv) if arg == "-H"]
    assert [name for name, _ in headers] == ["ce_id", "ce_type", "ce_source", "ce_time",
                                             "ce_specversion", "schema_version", "content-type",
                                             "correlation_id"]
    envelope = Envelope.from_headers([(name, value.encode()) for name, value in headers])
    assert envelope.type == RunRequested.ce_type
    assert envelope.correlation_id == request.run_id
    assert argv[argv.index("-k") + 1] == request.session_id  # keyed by session
    assert argv[argv.index("-t") + 1] == "mindstream.runs.requested.v1"


# --- the commands against a running system ---------------------------------------------------


@pytest.fixture(scope="module")
def stack(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    with running_stack(infra, tmp_path_factory.mktemp("kcat-stack"), prefix_stem="kc") as running:
        yield running


@pytest.mark.integration
@needs_kcat
def test_kcat_script_runs_an_agent(stack: RunningStack) -> None:
    result = bash("bash examples/kcat_run.sh", stack, timeout=90)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{stack.log_tail()}"
    published, answer = result.stdout.strip().splitlines()[-2:]
    run_id = published.split()[2]
    headers, body = answer.split("\t", 1)
    assert "ce_type=mindstream.runs.completed" in headers
    assert f"correlation_id={run_id}" in headers
    completed = RunCompleted.model_validate_json(body)
    assert completed.run_id == run_id and completed.status.value == "completed"
    assert completed.output == "Hello! I am the assistant agent, answering a request you published with kcat."


@pytest.mark.integration
@needs_kcat
def test_documented_publish_and_read_commands(stack: RunningStack) -> None:
    run = blocks("run")
    published = bash(localize(run["publish"], stack), stack)
    assert published.returncode == 0, published.stderr
    out = until_ok(localize(run["read"], stack), stack)
    as_json, as_text = out.strip().splitlines()
    record = json.loads(as_json)
    assert dict(zip(record["headers"][::2], record["headers"][1::2], strict=True))[
        "ce_type"] == "mindstream.runs.completed"
    assert json.loads(record["payload"])["output"].startswith("Hello! I am the assistant agent")
    assert '"run_id":"run-1"' in as_text and "ce_source=mindstream/reasoning" in as_text


@pytest.mark.integration
@needs_kcat
def test_documented_dead_letter_command_shows_why(stack: RunningStack) -> None:
    # A request without ce_type: refused, and dead-lettered with the reason.
    broken = ("echo '{\"run_id\":\"run-bad\",\"agent_id\":\"assistant\",\"session_id\":\"s-bad\","
              "\"user_id\":\"ada\",\"input\":\"hi\"}' | kcat -P -b 127.0.0.1:9092 "
              "-t mindstream.runs.requested.v1 -k s-bad -H ce_id=run-bad -H ce_source=kcat "
              "-H ce_time=2025-01-31T09:30:00Z -H ce_specversion=1.0 -H schema_version=1")
    assert bash(localize(broken, stack), stack).returncode == 0
    read = localize(blocks("run")["read-dead-letters"], stack)
    out = until_ok(f"{read.strip()} | grep \"dlq_reason=missing header 'ce_type'\"", stack)
    assert "run-bad" in out
