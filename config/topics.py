"""Kafka topic administration: the topics exist, with the configured partitions, before
anything produces to them (broker auto-creation would pick its own defaults)."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

from config.connections import kafka_options
from config.settings import Settings


async def ensure_topics(
    settings: Settings,
    names: Sequence[str],
    *,
    partitions: int | None = None,
    replication_factor: int | None = None,
    min_insync_replicas: int | None = None,
) -> list[str]:
    """Create those of ``names`` that do not exist (existing topics are left as they are);
    return the ones this call created. Partitions, replication factor and the topics' own
    ``min.insync.replicas`` default to ``BADBUZZ_TOPIC_PARTITIONS``,
    ``_REPLICATION_FACTOR`` and ``_MIN_INSYNC_REPLICAS`` (that one at most an explicit,
    smaller replication factor). A topic the broker refuses (say, more replicas than
    brokers) raises its Kafka error."""
    replication_factor = replication_factor or settings.topic_replication_factor
    if min_insync_replicas is None:
        min_insync_replicas = min(settings.topic_min_insync_replicas, replication_factor)
    if min_insync_replicas > replication_factor:
        raise ValueError(f"min.insync.replicas {min_insync_replicas} exceeds the replication factor {replication_factor}")
    configs = {"min.insync.replicas": str(min_insync_replicas)}
    admin = AIOKafkaAdminClient(**kafka_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in names if n not in existing]
        if not missing:
            return []
        response = await admin.create_topics([
            NewTopic(n, num_partitions=partitions or settings.topic_partitions, replication_factor=replication_factor, topic_configs=configs)
            for n in missing
        ])
        created = []
        for name, code, *message in response.topic_errors:
            if code == 0:
                created.append(name)
            # Another worker created it between our list and create: it exists, as wanted.
            elif code != TopicAlreadyExistsError.errno:
                raise for_code(code)(f"cannot create topic {name}: {message[0] if message and message[0] else 'refused'}")
        await _wait_for_leaders(admin, missing)
        return created
    finally:
        await admin.close()


def faust_topics(settings: Settings) -> list[str]:
    """Faust's own topic: its leader-election topic (one partition, never written), which Faust
    would create with the replication factor but no ``min.insync.replicas`` (it has no setting
    for topic configs). The worker holds no tables and no repartitioned streams, so it has no
    other internal topic."""
    return [f"{settings.app_id}-__assignor-__leader"]


async def ensure_worker_topics(
    settings: Settings, *, partitions: int | None = None, replication_factor: int | None = None, min_insync_replicas: int | None = None
) -> list[str]:
    """The worker's topics and Faust's own, created as ``ensure_topics`` does, so that Faust
    finds its topic there and leaves it as it is."""
    shape = {"replication_factor": replication_factor, "min_insync_replicas": min_insync_replicas}
    created = await ensure_topics(settings, settings.topics, partitions=partitions, **shape)
    return created + await ensure_topics(settings, faust_topics(settings), partitions=1, **shape)


async def _wait_for_leaders(admin: AIOKafkaAdminClient, names: Sequence[str], timeout_s: float = 30.0) -> None:
    """A new topic's partitions have no leader for a moment; producing then only earns
    retries and warnings."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        described = await admin.describe_topics(list(names))
        if all(t["partitions"] and all(p["leader"] >= 0 for p in t["partitions"]) for t in described):
            return
        await asyncio.sleep(0.1)


async def partition_count(settings: Settings, topic: str) -> int:
    """How many partitions ``topic`` has, as the brokers say (0: no such topic)."""
    admin = AIOKafkaAdminClient(**kafka_options(settings))
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
        return len(described["partitions"]) if described["error_code"] == 0 else 0
    finally:
        await admin.close()


async def delete_topics(settings: Settings, names: Sequence[str]) -> None:
    admin = AIOKafkaAdminClient(**kafka_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        doomed = [n for n in names if n in existing]
        if doomed:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()
