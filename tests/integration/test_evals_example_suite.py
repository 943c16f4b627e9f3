"""The example suite (evals/assistant.yaml) passes against the demo's scripted answers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml

from mindstream.cli.main import main
from shared.settings import KafkaSettings, MongoSettings
from tests.integration.reasoning_harness import agent, reasoning_stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

REPO = Path(__file__).resolve().parents[2]


async def test_the_example_suite_passes_on_the_demo_script(
    topics: KafkaSettings, mongo_settings: MongoSettings, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in {"KAFKA_BOOTSTRAP_SERVERS": topics.bootstrap_servers,
                        "MINDSTREAM_TOPIC_PREFIX": topics.topic_prefix,
                        "MONGODB_URI": mongo_settings.uri.get_secret_value(),
                        "MINDSTREAM_DB": mongo_settings.database}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MINDSTREAM_EVAL_GRADER_MODEL", raising=False)
    assistant = agent(yaml.safe_load((REPO / "agents" / "assistant.yaml").read_text()))
    script = REPO / "mindstream" / "demo" / "script.yaml"
    async with reasoning_stack(topics, mongo_settings, script, [assistant],
                               with_tools=True, with_memory=True):
        code = await asyncio.to_thread(main, ["eval", "run", str(REPO / "evals" / "assistant.yaml"),
                                              "--quiet", "--no-store"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "passed 4/4" in out
