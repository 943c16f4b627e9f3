"""Settings, result mapping, metrics labels, the entrypoint and ``mindstream tools list``."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from mindstream.cli.main import main as cli
from schemas.tools import ToolErrorCode
from services.tools.__main__ import main as serve
from services.tools.builtins import BUILTIN_MODULES
from services.tools.metrics import ToolMetrics
from services.tools.registry import ToolRegistry
from services.tools.results import contract_code, error_result
from services.tools.settings import ToolsSettings
from shared.observability.metrics import ServiceMetrics
from tests.unit.tools.tools_service_fakes import tool_call

pytestmark = pytest.mark.unit

HTTP_FETCH = "services.tools.builtins.http_fetch"


def test_defaults_offer_the_builtins_on_port_8082() -> None:
    settings = ToolsSettings()
    assert (settings.http_port, settings.modules) == (8082, BUILTIN_MODULES)
    assert settings.inline_result_limit == 64 * 1024


def test_modules_and_module_config_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINDSTREAM_TOOLS_MODULES", f"{HTTP_FETCH}, services.tools.builtins.clock")
    monkeypatch.setenv("MINDSTREAM_TOOLS_MODULE_CONFIG",
                       '{"http_fetch": {"allowed_hosts": ["example.com"]}}')  # fmt: skip
    settings = ToolsSettings()
    assert settings.modules == [HTTP_FETCH, "services.tools.builtins.clock"]
    assert settings.config_by_module() == {HTTP_FETCH: {"allowed_hosts": ["example.com"]}}
    monkeypatch.setenv("MINDSTREAM_TOOLS_MODULES", f'["{HTTP_FETCH}"]')
    assert ToolsSettings().modules == [HTTP_FETCH]


@pytest.mark.parametrize(
    ("override", "group"),
    [(None, "t1.mindstream-tools.tools-calls"), ("tools-blue", "tools-blue")],
)
def test_calls_are_read_in_the_per_topic_group_unless_one_is_set(
    override: str | None, group: str
) -> None:
    from services.tools.app import build
    from shared.settings import KafkaSettings, MongoSettings

    runtime = build(ToolsSettings(consumer_group=override), KafkaSettings(
        MINDSTREAM_TOPIC_PREFIX="t1."), MongoSettings())
    assert ("mindstream.tools.calls.v1", group) in runtime.subscriptions


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"module_config": {"nope": {}}}, "not in modules"),
        ({"mcp_servers": [{"name": "a", "transport": "http", "url": "http://x/mcp"}] * 2},
         "duplicate MCP server"),
        ({"inline_result_limit": 10_000, "max_result_bytes": 5_000}, "must not exceed"),
        ({"mcp_servers": [{"name": "a", "transport": "ftp"}]}, "transport"),
    ],
)
def test_bad_settings_are_refused_with_a_reason(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ToolsSettings.model_validate(values)


def test_error_codes_map_onto_the_contract_and_keep_the_fine_code() -> None:
    assert contract_code("circuit_open") is ToolErrorCode.UNAVAILABLE
    assert contract_code("approval_required") is ToolErrorCode.REJECTED
    assert contract_code("sandbox_crashed") is ToolErrorCode.FAILED
    crashed = error_result(tool_call("t"), "sandbox_crashed", "died of SIGSEGV")
    assert crashed.error is not None
    assert crashed.error.message == "[sandbox_crashed] died of SIGSEGV"
    timeout = error_result(tool_call("t"), "timeout", "x" * 5000)
    assert timeout.error is not None
    assert timeout.error.message.startswith("xxx")
    assert len(timeout.error.message) == 1024


def test_tool_labels_are_bounded_by_the_registry() -> None:
    registry = ToolRegistry()

    @registry.tool
    def known() -> int:
        """A registered tool."""
        return 1

    metrics = ServiceMetrics("tools")
    tm = ToolMetrics(metrics, registry)
    tm.answered("known", "ok", 0.01)
    tm.answered("invented_by_a_model", "unknown_tool", 0.0)
    sample = metrics.registry.get_sample_value
    assert sample("mindstream_tool_calls_total",
                  {"service": "tools", "tool": "known", "outcome": "ok"}) == 1  # fmt: skip
    assert sample("mindstream_tool_calls_total",
                  {"service": "tools", "tool": "other", "outcome": "unknown_tool"}) == 1  # fmt: skip


def test_serve_with_bad_settings_prints_one_line_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("shared.observability.logging.configure_logging", lambda *a, **k: None)
    monkeypatch.setenv("MINDSTREAM_TOOLS_MCP_SERVERS", '[{"name": "x", "transport": "stdio"}]')
    assert serve() == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "needs 'command'" in err
    monkeypatch.delenv("MINDSTREAM_TOOLS_MCP_SERVERS")
    monkeypatch.setenv("MINDSTREAM_TOOLS_MODULES", "no.such.module")
    assert serve() == 2
    assert "cannot import tool module 'no.such.module'" in capsys.readouterr().err


def test_tools_list_prints_every_tool_with_its_parameters(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli(["tools", "list"]) == 0
    out = capsys.readouterr().out
    assert "calculator  (timeout" in out
    assert "    expression: string (required)" in out
    assert out.rstrip().endswith("6 tools")
    assert cli(["tools", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} >= {"calculator", "http_fetch", "regex_extract"}


def test_tools_list_with_bad_settings_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MINDSTREAM_TOOLS_MODULES", "no.such.module")
    assert cli(["tools", "list"]) == 2
    assert "cannot import tool module" in capsys.readouterr().err
