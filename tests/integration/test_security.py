"""Security basics on real services: a SASL/PLAIN Kafka broker and a password-protected
Redis (both private, on free ports), a worker that authenticates to both, and secrets
that never reach its log."""
from __future__ import annotations

import os
import time

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from badbuzz import services
from badbuzz.processes import free_port
from badbuzz.services import kafka as kafka_svc
from config.connections import kafka_options, redis_client
from config.settings import Settings
from config.topics import ensure_topics
from counting.counters import Counters
from counting.windows import minute_of
from tests.conftest import running_worker, wait_for

pytestmark = pytest.mark.integration

KAFKA_PASSWORD = "kafka-pw-7f3e9c1d"
REDIS_PASSWORD = "redis-pw-b41d22e8"
SLACK_SECRET = "T000/B000/slack-secret-5c9a"


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    home = tmp_path_factory.mktemp("secured-services")
    kafka_port, redis_port = free_port(), free_port()
    os.environ.setdefault(kafka_svc.LIBS_ENV, str(kafka_svc.default_libs_dir(Settings())))
    settings = Settings(
        home=home,
        kafka_port=kafka_port,
        kafka_controller_port=free_port(),
        redis_port=redis_port,
        kafka_bootstrap=f"127.0.0.1:{kafka_port}",
        redis_url=f"redis://127.0.0.1:{redis_port}/0",
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username="badbuzz",
        kafka_sasl_password=KAFKA_PASSWORD,
        redis_password=REDIS_PASSWORD,
        _env_file=None,
    )
    services.up(settings, echo=lambda _: None)
    yield settings
    services.down(settings)


async def test_clients_without_credentials_are_refused(secured):
    anonymous = secured.model_copy(update={"kafka_security_protocol": "PLAINTEXT", "redis_password": None})
    producer = AIOKafkaProducer(**kafka_options(anonymous), request_timeout_ms=3000)
    with pytest.raises(KafkaError):
        await producer.start()
        await producer.send_and_wait("anything", b"x")
    await producer.stop()
    import redis.exceptions

    client = redis_client(anonymous)
    with pytest.raises(redis.exceptions.AuthenticationError):
        await client.set("k", "v")
    await client.aclose()


async def test_worker_authenticates_and_never_logs_secrets(secured, model_home, tmp_path):
    settings = secured.model_copy(
        update=dict(
            home=model_home, topic_raw="sec.raw", topic_dlq="sec.dlq", topic_alerts="sec.alerts", redis_prefix="sec", app_id="badbuzz-sec", web_port=free_port()
        )
    )
    await ensure_topics(settings, [settings.topic_raw, settings.topic_dlq, settings.topic_alerts])
    producer = AIOKafkaProducer(**kafka_options(settings))
    await producer.start()
    now = int(time.time() * 1000)
    for i in range(20):
        await producer.send(settings.topic_raw, orjson.dumps({"id": f"s{i}", "text": "@united lost my bag", "created_at": now - 60_000}))
    await producer.send(settings.topic_raw, b"{broken")
    await producer.flush()
    await producer.stop()

    redis = redis_client(settings)
    counters = Counters(redis, prefix=settings.redis_prefix, ttl_s=1)

    async def all_counted():
        return (await counters.window("all", minute_of(now), 5)).total == 20

    log = tmp_path / "worker.log"
    with running_worker(settings, log, SLACK_WEBHOOK_URL=f"http://127.0.0.1:{free_port()}/services/{SLACK_SECRET}") as worker:
        await wait_for(all_counted, timeout=90, what="20 posts counted through SASL and Redis AUTH", process=worker)
    await redis.aclose()
    text = log.read_text()
    assert "dead-lettered" in text  # the log is real and verbose enough to have leaked
    for secret in (KAFKA_PASSWORD, REDIS_PASSWORD, SLACK_SECRET):
        assert secret not in text
