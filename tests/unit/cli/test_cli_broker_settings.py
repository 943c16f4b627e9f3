"""The broker factory cannot produce a non-durable producer."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from shared.kafka import broker as broker_module
from shared.settings import KafkaSettings

pytestmark = pytest.mark.unit


def captured(monkeypatch: pytest.MonkeyPatch, settings: KafkaSettings) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def fake(*args: Any, **kwargs: Any) -> object:
        seen.update(kwargs, servers=args[0])
        return object()

    monkeypatch.setattr(broker_module, "KafkaBroker", fake)
    broker_module.make_broker(settings, "svc")
    return seen


def test_acks_all_and_idempotence(monkeypatch: pytest.MonkeyPatch) -> None:
    kwargs = captured(monkeypatch, KafkaSettings(bootstrap_servers="k:9092"))
    assert kwargs["acks"] == "all"
    assert kwargs["enable_idempotence"] is True
    assert kwargs["servers"] == "k:9092"
    assert kwargs["security"] is None


def test_sasl_scram_over_tls(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = KafkaSettings(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                             sasl_username="svc", sasl_password=SecretStr("pw"))
    security = captured(monkeypatch, settings)["security"]
    assert type(security).__name__ == "SASLScram512"
    assert security.use_ssl is True


def test_sasl_without_credentials_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="needs KAFKA_SASL_USERNAME"):
        captured(monkeypatch, KafkaSettings(security_protocol="SASL_PLAINTEXT"))
