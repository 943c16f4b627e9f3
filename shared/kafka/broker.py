"""The broker factory: durable producer settings, security from settings.

Architecture rule 1: ``acks=all`` and idempotence on, always; a service
cannot opt out. ``graceful_timeout`` lets in-flight handlers finish on
SIGTERM before the consumer leaves its group.
"""

from __future__ import annotations

import logging
import ssl

from faststream.kafka import KafkaBroker
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from shared.settings import KafkaSettings

__all__ = ["make_broker"]


def _ssl_context(settings: KafkaSettings) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=settings.ssl_cafile)
    if settings.ssl_certfile:
        context.load_cert_chain(settings.ssl_certfile, settings.ssl_keyfile)
    return context


def _security(settings: KafkaSettings) -> BaseSecurity | None:
    protocol = settings.security_protocol
    if protocol == "PLAINTEXT":
        return None
    use_ssl = protocol in ("SSL", "SASL_SSL")
    context = _ssl_context(settings) if use_ssl else None
    if protocol == "SSL":
        return BaseSecurity(ssl_context=context, use_ssl=True)
    if not settings.sasl_username or settings.sasl_password is None:
        raise ValueError(f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_USERNAME and "
                         "KAFKA_SASL_PASSWORD")
    user, password = settings.sasl_username, settings.sasl_password.get_secret_value()
    mechanism = settings.sasl_mechanism or "PLAIN"
    if mechanism == "PLAIN":
        return SASLPlaintext(user, password, ssl_context=context, use_ssl=use_ssl)
    scram = SASLScram256 if mechanism == "SCRAM-SHA-256" else SASLScram512
    return scram(user, password, ssl_context=context, use_ssl=use_ssl)


def make_broker(settings: KafkaSettings, client_id: str, *,
                graceful_timeout_s: float = 20.0) -> KafkaBroker:
    return KafkaBroker(
        settings.bootstrap_servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=settings.linger_ms,
        request_timeout_ms=settings.request_timeout_ms,
        security=_security(settings),
        graceful_timeout=graceful_timeout_s,
        # FastStream's records go to our logger (JSON through the root handler) instead of
        # its own coloured console handler; per-message "Received/Processed" lines are debug.
        logger=logging.getLogger("mindstream.faststream"),
        log_level=logging.DEBUG,
    )
