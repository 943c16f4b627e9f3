"""Settings from the environment, the broker-lag arithmetic, and the entrypoint's bad-setting exit."""

from __future__ import annotations

import pytest
from aiokafka.structs import TopicPartition

from services.telemetry import __main__ as entry
from services.telemetry.broker_monitor import GroupLag, lag_by_topic
from services.telemetry.settings import DEFAULT_LAG_GROUPS, TelemetrySettings

pytestmark = pytest.mark.unit


def test_defaults() -> None:
    settings = TelemetrySettings()
    assert settings.http_port == 8084
    assert tuple(settings.lag_groups) == DEFAULT_LAG_GROUPS
    assert settings.price_table().models == frozenset()


def test_lists_and_prices_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINDSTREAM_TELEMETRY_PRICES",
                       '{"gpt-x": {"prompt_per_1k": 0.5, "completion_per_1k": 1.5}}')
    monkeypatch.setenv("MINDSTREAM_TELEMETRY_TOOL_ALLOWLIST", "calculator, clock")
    monkeypatch.setenv("MINDSTREAM_TELEMETRY_LAG_GROUPS", '["mindstream-tools"]')
    settings = TelemetrySettings()
    assert settings.price_table().models == frozenset({"gpt-x"})
    assert settings.tool_allowlist == ["calculator", "clock"]
    assert settings.lag_groups == ["mindstream-tools"]


def test_bad_setting_exits_2_with_one_line(monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MINDSTREAM_TELEMETRY_PRICES", '{"gpt-x": {"prompt_per_1k": 1}}')
    assert entry.main() == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "prices.gpt-x.completion_per_1k" in err


def test_lag_sums_partitions_and_keeps_the_worst() -> None:
    a0, a1, a2 = (TopicPartition("p.runs", i) for i in range(3))
    other = TopicPartition("elsewhere", 0)
    lags = lag_by_topic(
        "g",
        committed={a0: 5, a1: 10, other: 0},
        ends={a0: 8, a1: 9, a2: 4, other: 100},
        starts={a2: 1},
        label={"p.runs": "runs"},
    )
    # a0: 3 behind; a1: committed past the end (recreated topic) counts 0; a2: no commit, from start.
    assert lags == [GroupLag("g", "runs", total=6, worst=3)]
