"""Shared fixtures. Integration tests talk to a real Kafka broker and a real Redis:
the ones ``badbuzz services up`` starts (addresses from ``BADBUZZ_KAFKA_BOOTSTRAP`` /
``BADBUZZ_REDIS_URL``), or, with ``BADBUZZ_TESTCONTAINERS=1`` where a Docker engine
exists, containers started by testcontainers."""
from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

# TensorFlow and torch each bundle LLVM: once TensorFlow is loaded, importing transformers'
# model classes aborts the process ("Option ... registered more than once"). The suite
# trains both families in one process, so the torch side is loaded first.
with contextlib.suppress(ImportError):
    from transformers import AutoModelForSequenceClassification  # noqa: F401

from badbuzz.processes import free_port, start_worker, stop_worker
from config.settings import Settings

# Shared 2-core machines: generation speed is not what these properties test.
hypothesis_settings.register_profile("badbuzz", deadline=None, suppress_health_check=[HealthCheck.too_slow])
hypothesis_settings.load_profile("badbuzz")

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _no_ambient_mlflow(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def live_services():
    """(kafka_bootstrap, redis_url) of running services; fails loudly when they are not up."""
    if os.environ.get("BADBUZZ_TESTCONTAINERS") == "1":
        yield from _containers()
        return
    settings = Settings()
    host, port = settings.kafka_bootstrap.rsplit(":", 1)
    if not _reachable(host, int(port)):
        pytest.fail(f"no Kafka broker at {settings.kafka_bootstrap}: run `badbuzz services up` first")
    import redis

    try:
        redis.Redis.from_url(settings.redis_url, socket_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.fail(f"no Redis at {settings.redis_url} ({exc}): run `badbuzz services up` first")
    yield settings.kafka_bootstrap, settings.redis_url


def _containers():
    from testcontainers.kafka import KafkaContainer
    from testcontainers.redis import RedisContainer

    with KafkaContainer().with_kraft() as kafka, RedisContainer() as redis_container:
        host = redis_container.get_container_host_ip()
        yield kafka.get_bootstrap_server(), f"redis://{host}:{redis_container.get_exposed_port(6379)}/0"


@pytest.fixture(scope="session")
def model_home(tmp_path_factory, live_services):
    """A private BADBUZZ_HOME whose MLflow registry holds a small TF-IDF champion."""
    from training.train import train

    home = tmp_path_factory.mktemp("badbuzz-home")
    settings = Settings(home=home, mlflow_tracking_uri="")
    train("tfidf", "airline", "negative_vs_rest", settings, limit=4000, progress=lambda *_: None)
    return home


@pytest.fixture
def isolated(live_services, model_home):
    """Settings with this test's own topics, consumer group and Redis prefix."""
    kafka, redis_url = live_services
    tag = uuid.uuid4().hex[:10]
    return Settings(
        home=model_home,
        mlflow_tracking_uri="",
        kafka_bootstrap=kafka,
        redis_url=redis_url,
        topic_raw=f"t-{tag}.raw",
        topic_dlq=f"t-{tag}.dlq",
        topic_alerts=f"t-{tag}.alerts",
        topic_feedback=f"t-{tag}.feedback",
        redis_prefix=f"test:{tag}",
        app_id=f"badbuzz-test-{tag}",
        web_port=free_port(),
    )


def worker_env_base() -> dict[str, str]:
    """The test's environment minus anything that would point a worker at real sinks."""
    return {k: v for k, v in os.environ.items() if k not in ("SLACK_WEBHOOK_URL", "SLACK_BOT_TOKEN", "APPLICATIONINSIGHTS_CONNECTION_STRING")}


@contextmanager
def running_worker(settings: Settings, log_path: Path, **extra_env: str):
    """A real ``badbuzz worker`` process; its log is printed if the test fails."""
    proc = start_worker(settings, log_path, base_env=worker_env_base(), **extra_env)
    try:
        yield proc
    except BaseException:
        print(log_path.read_text()[-8000:])
        raise
    finally:
        stop_worker(proc)


async def wait_for(predicate, *, timeout: float, interval: float = 0.25, what: str = "condition", process=None):
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the worker exited with code {process.returncode} while waiting for {what}")
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(interval)


@pytest.fixture(scope="session")
def one_node_cluster(tmp_path_factory):
    """URL of a one-node Redis Cluster on a free port, owning every slot: it refuses
    cross-slot commands and routes by key as a real cluster does."""
    import subprocess

    import redis

    from badbuzz.services.manager import port_free
    from badbuzz.services.redis import check_redis

    workdir = tmp_path_factory.mktemp("redis-cluster")
    # A cluster node also listens on its port + 10000 (the cluster bus): both must be free.
    port = free_port()
    while port + 10000 > 65535 or not port_free(port + 10000):
        port = free_port()
    server = subprocess.Popen(
        [check_redis(), "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes", "--cluster-config-file", str(workdir / "nodes.conf"),
         "--dir", str(workdir), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        node = redis.Redis(port=port)
        deadline = time.monotonic() + 60
        while True:
            try:
                node.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.05)
        node.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        while b"cluster_state:ok" not in node.execute_command("CLUSTER", "INFO"):
            assert time.monotonic() < deadline, "the one-node cluster never reported cluster_state:ok"
            time.sleep(0.05)
        node.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(timeout=10)
