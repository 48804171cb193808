"""Redis: ``redis-server`` on 127.0.0.1 with an append-only file synced every second."""
from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from badbuzz.services.errors import ServiceError
from config.connections import redact_url
from config.settings import Settings

LOCAL_HOSTS = ("127.0.0.1", "localhost")
NAME = "redis"
# redis-server rewrites its process title to "redis-server 127.0.0.1:PORT".
MARKER = "redis-server"
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0


def run_dir(settings: Settings) -> Path:
    return settings.home / "redis"


def address(settings: Settings) -> str:
    return f"127.0.0.1:{settings.redis_port}"


def ports(settings: Settings) -> list[tuple[int, str]]:
    return [(settings.redis_port, "BADBUZZ_REDIS_PORT")]


def config_warning(settings: Settings) -> str | None:
    """Clients read redis_url, the server listens on redis_port: say when they disagree."""
    url = urlsplit(settings.redis_url)
    if url.hostname in LOCAL_HOSTS and (url.port or 6379) == settings.redis_port:
        return None
    return (
        f"note: BADBUZZ_REDIS_URL={redact_url(settings.redis_url)} does not point at the local "
        f"Redis on {address(settings)}"
    )


def check_redis() -> str:
    path = shutil.which("redis-server")
    if path is None:
        raise ServiceError("redis-server is required: apt-get install -y redis-server")
    return path


def prepare(settings: Settings, echo: Callable[[str], None] = print) -> list[str]:
    """Check prerequisites and return the command line."""
    server = check_redis()
    run_dir(settings).mkdir(parents=True, exist_ok=True)
    # The password goes in a private config file, not on the command line where `ps`
    # would show it.
    config = run_dir(settings) / "redis.conf"
    config.touch(mode=0o600)
    config.write_text(
        f"requirepass {settings.redis_password.get_secret_value()}\n" if settings.redis_password else ""
    )
    return [
        server,
        str(config),
        "--port", str(settings.redis_port),
        "--bind", "127.0.0.1",
        # Counters, seen-ids, incidents and the alert outbox must survive a Redis restart:
        # append-only file, fsynced every second (snapshots off, the AOF is enough).
        "--save", "",
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--daemonize", "no",
        "--dir", str(run_dir(settings)),
    ]


def probe(settings: Settings, timeout: float = 2.0) -> bool:
    import redis

    client = redis.Redis(
        host="127.0.0.1",
        port=settings.redis_port,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        password=settings.redis_password.get_secret_value() if settings.redis_password else None,
    )
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()
