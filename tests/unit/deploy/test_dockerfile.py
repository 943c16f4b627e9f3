"""The Dockerfile passes hadolint (pinned, from PyPI) and the project's image policy."""

from __future__ import annotations

import subprocess

import checks
import pytest
from _gen import ROOT

pytestmark = pytest.mark.unit

DOCKERFILE = ROOT / "deploy/Dockerfile"


def test_hadolint_passes() -> None:
    result = subprocess.run([str(checks.tool("hadolint")), "--no-color", str(DOCKERFILE)],
                            capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_policy_passes() -> None:
    assert checks.dockerfile_problems(DOCKERFILE.read_text()) == []


@pytest.mark.parametrize(("edit", "problem"), [
    (lambda t: t.replace("3.11.14-slim-bookworm", "latest"), "not pinned"),
    (lambda t: t.replace("USER 10001:10001", "USER root"), "expected 10001"),
    (lambda t: t.replace("USER 10001:10001\n", ""), "no USER"),
    (lambda t: t.replace('ENTRYPOINT ["mindstream", "serve"]', "ENTRYPOINT mindstream serve"),
     "ENTRYPOINT"),
    (lambda t: t.replace("STOPSIGNAL SIGTERM", ""), "STOPSIGNAL"),
    (lambda t: t.replace("COPY agents /app/agents", "ADD https://example.com/a.tgz /app/"),
     "use COPY"),
    (lambda t: t.replace("WORKDIR /app", "RUN apt-get update && apt-get install -y gcc\n"
                         "WORKDIR /app"), "build tools"),
    (lambda t: t.replace("PYTHONDONTWRITEBYTECODE=1 \\\n    PYTHONUNBUFFERED", "PYTHONUNBUFFERED"),
     "PYTHONDONTWRITEBYTECODE"),
])
def test_image_policy_catches(edit: object, problem: str) -> None:
    text = DOCKERFILE.read_text()
    changed = edit(text)  # type: ignore[operator]
    assert changed != text, "the edit did not apply; update the test with the Dockerfile"
    assert any(problem in p for p in checks.dockerfile_problems(changed))


def test_build_context_is_allow_listed() -> None:
    ignore = (ROOT / "deploy/Dockerfile.dockerignore").read_text().splitlines()
    assert ignore[ignore.index("*") - 1].startswith("#") or ignore[0] == "*"
    copied = {"pyproject.toml", "README.md", "schemas/", "shared/", "services/", "mindstream/",
              "agents/"}
    assert {line[1:] for line in ignore if line.startswith("!")} == copied
    for path in copied:
        assert (ROOT / path).exists(), f"the image copies {path}, which is missing"
