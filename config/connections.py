"""Clients for Kafka and Redis built from the settings, security included, so every
producer, consumer, admin client, Faust app and Redis connection in the project
authenticates the same way."""
from __future__ import annotations

import ssl
from typing import Any

import redis.asyncio as aioredis

from config.settings import Settings


def _ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.kafka_security_protocol not in ("SSL", "SASL_SSL"):
        return None
    from aiokafka.helpers import create_ssl_context

    return create_ssl_context(
        cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None,
        certfile=str(settings.kafka_ssl_certfile) if settings.kafka_ssl_certfile else None,
        keyfile=str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
    )


def kafka_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for any aiokafka client (producer, consumer, admin)."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": settings.kafka_security_protocol,
    }
    context = _ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    if settings.kafka_security_protocol.startswith("SASL"):
        options.update(
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_plain_username=settings.kafka_sasl_username,
            sasl_plain_password=settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else None,
        )
    return options


def faust_credentials(settings: Settings):
    """``broker_credentials`` for the Faust app (None for plaintext)."""
    import faust

    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(_ssl_context(settings))
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username,
        password=settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else None,
        ssl_context=_ssl_context(settings),
        mechanism=settings.kafka_sasl_mechanism,
    )


def redis_client(settings: Settings, **kwargs: Any) -> aioredis.Redis:
    """Redis from ``BADBUZZ_REDIS_URL`` (``rediss://`` for TLS), with the password kept
    out of the URL so it never shows in logs or settings dumps."""
    options: dict[str, Any] = dict(kwargs)
    if settings.redis_password is not None:
        options["password"] = settings.redis_password.get_secret_value()
    if settings.redis_url.startswith("rediss://") and settings.redis_ssl_ca_file:
        options["ssl_ca_certs"] = str(settings.redis_ssl_ca_file)
    return aioredis.Redis.from_url(settings.redis_url, **options)
