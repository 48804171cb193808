"""Clients for Kafka and Redis built from the settings, security included, so every
producer, consumer, admin client, Faust app and Redis connection in the project
authenticates the same way; and the masking that keeps their secrets out of output."""
from __future__ import annotations

import logging
import re
import ssl
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

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
    """Redis as ``BADBUZZ_REDIS_MODE`` says: a standalone server (``BADBUZZ_REDIS_URL``,
    ``rediss://`` for TLS), a Redis Cluster reached through any of its nodes, or the master
    a set of Sentinels names (followed across failovers). The password is kept out of the
    URL so it never shows in logs or settings dumps."""
    options: dict[str, Any] = dict(kwargs)
    if settings.redis_password is not None:
        options["password"] = settings.redis_password.get_secret_value()
    if settings.redis_url.startswith("rediss://") and settings.redis_ssl_ca_file:
        options["ssl_ca_certs"] = str(settings.redis_ssl_ca_file)
    if settings.redis_mode == "cluster":
        from redis.asyncio.cluster import ClusterNode, RedisCluster

        options.pop("single_connection_client", None)
        nodes = cluster_nodes(settings.redis_url)
        if len(nodes) == 1:
            return RedisCluster.from_url(settings.redis_url, **options)
        # Several nodes named: the client starts from whichever answers, so a worker
        # starting while one of them is down still finds the cluster.
        parts = urlsplit(settings.redis_url)
        if parts.password and "password" not in options:
            options["password"] = parts.password
        if parts.username:
            options.setdefault("username", parts.username)
        if parts.scheme == "rediss":
            options["ssl"] = True
        return RedisCluster(startup_nodes=[ClusterNode(host, port) for host, port in nodes], **options)
    if settings.redis_mode == "sentinel":
        from redis.asyncio.sentinel import Sentinel

        sentinel_options = {"password": options["password"]} if "password" in options else {}
        sentinel = Sentinel(settings.sentinel_addresses, sentinel_kwargs=sentinel_options, **options)
        return sentinel.master_for(settings.redis_sentinel_master)
    return aioredis.Redis.from_url(settings.redis_url, **options)


def cluster_nodes(url: str) -> list[tuple[str, int]]:
    """The nodes a Redis URL names: ``redis://[user:password@]host:port[,host:port...]/0``
    (several only for a cluster's startup nodes)."""
    hosts = urlsplit(url).netloc.rpartition("@")[2]
    nodes = []
    for item in hosts.split(","):
        host, _, port = item.strip().rpartition(":")
        nodes.append((host or item.strip(), int(port) if host else 6379))
    return nodes


def shared_keyspace(prefix: str) -> str:
    """The key prefix of the low-volume shared state (incidents, outbox, silences, feedback,
    console accounts): one hash tag, so on Redis Cluster all of it lives in one slot and
    every script and transaction over it stays legal. The counters spread by partition
    instead (``counting.counters``)."""
    return "{" + prefix + "}"


async def transaction(redis: aioredis.Redis):
    """A MULTI/EXEC pipeline, legal on Redis Cluster when all its keys share a hash tag.
    redis-py's cluster client queues each command of a transaction on a thread with an
    event loop of its own, and first (re)discovers the cluster there if it has to: the
    connections that makes belong to that short-lived loop and fail on this one. So the
    discovery is done here, on the caller's loop; nothing else runs before the caller
    queues its commands, since queueing them does not yield."""
    from redis.asyncio.cluster import RedisCluster

    if isinstance(redis, RedisCluster):
        await redis.initialize()
    return redis.pipeline(transaction=True)


MASK = "***"
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:@/\s]*:)[^\s/]*(?=@)")
_QUERY_SECRET = re.compile(r"(?P<head>[?&;](?:password|passwd|pwd|token|secret|access_token|api_key|sig)=)[^&;#\s]*", re.IGNORECASE)
_PATTERNS = (
    (_URL_PASSWORD, rf"\g<head>{MASK}"),
    (_QUERY_SECRET, rf"\g<head>{MASK}"),
    # The webhook URL is its own credential: the path after the host is the secret.
    (re.compile(r"(?P<head>https://hooks\.slack(?:-gov)?\.com/)[^\s'\"<>]+"), rf"\g<head>{MASK}"),
    (re.compile(r"\bx(?:ox[a-z]|app)-[A-Za-z0-9-]+"), MASK),
    (re.compile(r"(?P<head>InstrumentationKey=)[^;\s'\"]+", re.IGNORECASE), rf"\g<head>{MASK}"),
)


def redact_url(url: str) -> str:
    """``url`` as it may be printed: the password of its user part and password-like query
    parameters masked (``redis://:***@host:6379/0``)."""
    for pattern, replacement in _PATTERNS[:2]:
        url = pattern.sub(replacement, url)
    return url


def secret_values(settings: Settings) -> list[str]:
    """Every secret the settings hold, as it would appear in text."""
    secrets = [
        secret.get_secret_value()
        for secret in (
            settings.slack_webhook_url, settings.slack_bot_token, settings.appinsights_connection_string,
            settings.kafka_sasl_password, settings.redis_password,
        )
        if secret is not None
    ]
    if settings.appinsights_connection_string is not None:
        secrets += re.findall(r"InstrumentationKey=([^;]+)", settings.appinsights_connection_string.get_secret_value(), re.IGNORECASE)
    for url in (settings.redis_url, settings.tracking_uri):
        try:
            password = urlsplit(url).password
        except ValueError:
            password = None
        if password:
            secrets.append(password)
    return secrets


class SecretFilter(logging.Filter):
    """Masks the given secrets, and anything shaped like a credential (a URL's password,
    a Slack webhook or token, an App Insights instrumentation key), in a record's message,
    exception and stack text."""

    def __init__(self, secrets: Iterable[str] = ()):
        super().__init__()
        # Longest first, so a secret containing another is masked whole; very short values
        # would mask ordinary words.
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is the handler's to report, as logging does
            return True
        masked = self.redact(message)
        if masked != message:
            record.msg, record.args = masked, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


_active = SecretFilter()


def install_log_redaction(settings: Settings) -> SecretFilter:
    """Mask secrets in every log record from now on, whichever logger makes it and
    whichever handler writes it. Applied as each record is created rather than on
    handlers: the Faust worker replaces the root handlers, and a logger that does not
    propagate would bypass them."""
    global _active
    _active = SecretFilter(secret_values(settings))
    base = logging.getLogRecordFactory()
    base = getattr(base, "unredacted", base)
    redactor = _active

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = base(*args, **kwargs)
        redactor.filter(record)
        return record

    factory.unredacted = base  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
    return _active


def redact(text: str) -> str:
    """``text`` with the installed secrets and credential-shaped strings masked."""
    return _active.redact(text)
