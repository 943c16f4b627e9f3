"""Every service's main: what goes wrong before it runs is one line and an exit code."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.entrypoint import serve


class DemoSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MINDSTREAM_DEMO_", extra="ignore")
    workers: int = Field(default=1, ge=1)


class BrokenToolModule(Exception):
    pass


def _build_refusing(exc: Exception) -> Any:
    def build(*_a: Any, **_k: Any) -> Any:
        raise exc

    return build


def test_bad_setting_is_one_line_and_exit_2(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MINDSTREAM_DEMO_WORKERS", "0")
    assert serve("demo", DemoSettings, _build_refusing(AssertionError("not reached"))) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mindstream demo: invalid setting: DemoSettings: workers:")
    assert "\n" not in err


@pytest.mark.parametrize("refusal", [ValueError("KAFKA_SECURITY_PROTOCOL=SASL_SSL needs ..."),
                                     BrokenToolModule("tool module 'x' failed to import")])
def test_a_configuration_the_build_refuses_is_one_line_and_exit_2(
    refusal: Exception, capsys: pytest.CaptureFixture[str],
) -> None:
    code = serve("demo", DemoSettings, _build_refusing(refusal), refusals=(BrokenToolModule,))
    assert code == 2
    assert capsys.readouterr().err.strip() == f"mindstream demo: {refusal}"


def test_an_unexpected_build_error_is_not_hidden() -> None:
    with pytest.raises(ZeroDivisionError):
        serve("demo", DemoSettings, _build_refusing(ZeroDivisionError("bug")))
