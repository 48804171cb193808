"""Fixtures of the failure suite: private Kafka and Redis it may stop, and per-test names."""
from __future__ import annotations

import os
import time

import pytest

from badbuzz import services
from badbuzz.processes import free_port
from badbuzz.services import kafka as kafka_svc
from config.settings import Settings


@pytest.fixture(scope="module")
def private(tmp_path_factory, model_home):
    """Private Kafka + Redis (sharing the machine's Kafka jar cache) and settings for them."""
    home = tmp_path_factory.mktemp("private-services")
    kafka_port, controller_port, redis_port = free_port(), free_port(), free_port()
    os.environ.setdefault(kafka_svc.LIBS_ENV, str(kafka_svc.default_libs_dir(Settings())))
    settings = Settings(
        home=home,
        kafka_port=kafka_port,
        kafka_controller_port=controller_port,
        redis_port=redis_port,
        kafka_bootstrap=f"127.0.0.1:{kafka_port}",
        redis_url=f"redis://127.0.0.1:{redis_port}/0",
        _env_file=None,
    )
    services.up(settings, echo=lambda _: None)
    yield settings
    services.down(settings)


@pytest.fixture
def scenario(private, model_home, request):
    tag = f"{request.node.name[-20:].strip('_')}-{int(time.time() * 1000) % 10_000_000}"
    return private.model_copy(
        update=dict(
            home=model_home,
            topic_raw=f"f-{tag}.raw",
            topic_dlq=f"f-{tag}.dlq",
            topic_alerts=f"f-{tag}.alerts",
            redis_prefix=f"fail:{tag}",
            app_id=f"badbuzz-fail-{tag}",
            web_port=free_port(),
        )
    )
