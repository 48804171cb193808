"""Topics created on the real broker carry the configured shape: the settings' partitions,
replication factor and min.insync.replicas, and Faust's leader topic one partition of it."""
from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from config.connections import kafka_options
from config.topics import delete_topics, ensure_worker_topics, faust_topics

pytestmark = pytest.mark.integration


async def _shape(settings, names):
    admin = AIOKafkaAdminClient(**kafka_options(settings))
    await admin.start()
    try:
        described = await admin.describe_topics(names)
        (response,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n, {"min.insync.replicas": None}) for n in names])
    finally:
        await admin.close()
    min_isr = {resource[3]: {entry[0]: entry[1] for entry in resource[4]}["min.insync.replicas"] for resource in response.resources}
    return {
        t["topic"]: (len(t["partitions"]), {len(p["replicas"]) for p in t["partitions"]}, min_isr[t["topic"]])
        for t in described
    }


def test_worker_topics_have_the_settings_replication_and_min_insync(isolated):
    settings = isolated.model_copy(update={"topic_partitions": 3, "topic_replication_factor": 1, "topic_min_insync_replicas": 1})
    names = [*settings.topics, *faust_topics(settings)]

    async def scenario():
        created = await ensure_worker_topics(settings)
        try:
            shape = await _shape(settings, names)
            # The idempotent producer's first write: the broker grants it a producer id.
            producer = AIOKafkaProducer(**kafka_options(settings), acks="all", enable_idempotence=True)
            await producer.start()
            try:
                sent = await producer.send_and_wait(settings.topic_raw, b"{}", key=b"1")
            finally:
                await producer.stop()
            return created, shape, sent
        finally:
            await delete_topics(settings, names)

    created, shape, sent = asyncio.run(scenario())
    assert created == names
    assert shape == {name: (3, {1}, "1") for name in settings.topics} | {faust_topics(settings)[0]: (1, {1}, "1")}
    assert sent.topic == settings.topic_raw and sent.offset == 0
