"""The local clusters hold up to what they are for: a SIGKILLed partition leader loses no
acknowledged message, a SIGKILLed Redis master is replaced by its replica and the cluster
client keeps counting exactly, and `services env --cluster` points a process at them."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from redis.exceptions import RedisError

from config.connections import redis_client
from config.topics import ensure_topics
from tests.conftest import REPO

pytestmark = [pytest.mark.cluster, pytest.mark.integration]

PARTITIONS = 3


async def _create_topic(clusters, topic: str) -> None:
    # Returns once every partition has a leader (a topic just created has none for a moment).
    await ensure_topics(clusters.settings, [topic], partitions=PARTITIONS, replication_factor=3, min_insync_replicas=2)


async def _produce(producer: AIOKafkaProducer, topic: str, numbers: range) -> None:
    """Every send awaited to its acknowledgement: an exception here is a lost message."""
    futures = [await producer.send(topic, str(n).encode(), partition=n % PARTITIONS) for n in numbers]
    await asyncio.gather(*futures)


async def _consume_all(bootstrap: str, topic: str, expect: int, timeout: float = 60) -> list[int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
    seen: list[int] = []
    try:
        async with asyncio.timeout(timeout):
            while len(seen) < expect:
                batches = await consumer.getmany(timeout_ms=1000)
                seen += [int(record.value) for records in batches.values() for record in records]
        # Anything past the expected count would be a duplicate.
        batches = await consumer.getmany(timeout_ms=1000)
        seen += [int(record.value) for records in batches.values() for record in records]
    finally:
        await consumer.stop()
    return seen


async def test_killing_a_partition_leader_loses_no_acknowledged_message(clusters):
    topic = f"cluster-{uuid.uuid4().hex[:8]}"
    await _create_topic(clusters, topic)
    described = await clusters.describe(topic)
    assert [len(described[p]["replicas"]) for p in range(PARTITIONS)] == [3] * PARTITIONS
    producer = AIOKafkaProducer(bootstrap_servers=clusters.bootstrap, acks="all", enable_idempotence=True, request_timeout_ms=30_000)
    await producer.start()
    try:
        await _produce(producer, topic, range(0, 300))
        leader = await clusters.leader_of(topic, 0)
        clusters.kill_broker(leader)
        # Sent while the dead leader is being fenced: the producer retries onto the new one.
        await _produce(producer, topic, range(300, 600))
    finally:
        await producer.stop()
    try:
        assert await clusters.leader_of(topic, 0) != leader
        assert sorted(await _consume_all(clusters.bootstrap, topic, expect=600)) == list(range(600))
    finally:
        clusters.heal()
    assert leader in (await clusters.describe(topic))[0]["replicas"]


async def test_killing_a_redis_master_promotes_its_replica_and_loses_no_acknowledged_increment(clusters):
    client = redis_client(clusters.settings)
    key = f"cluster-test:{uuid.uuid4().hex[:8]}"
    master = clusters.redis_master_for(key)
    replica = next(port for port, (role, of) in clusters.redis_roles().items() if role == "replica" and of == master)
    acknowledged = 0
    try:
        for _ in range(200):
            await client.incr(key)
            # Replication is asynchronous: an increment is acknowledged once its replica has
            # it too, or the kill below could take the last ones with the master.
            assert await client.execute_command("WAIT", 1, 5000, target_nodes=client.get_node_from_key(key)) == 1
            acknowledged += 1
        clusters.kill_redis(master)
        failed = 0
        while acknowledged < 400:
            try:
                await client.incr(key)
            except RedisError:  # the master is dead or the slot is not served yet: not applied
                failed += 1
                await asyncio.sleep(0.1)
                continue
            acknowledged += 1
        clusters.wait_redis_failover()
        assert clusters.redis_master_for(key) == replica
        assert int(await client.get(key)) == acknowledged == 400
    finally:
        await client.aclose()
        clusters.heal()
    assert clusters.redis_roles()[master] == ("replica", replica)


def test_services_env_cluster_points_a_process_at_the_clusters(clusters):
    ports = {"BADBUZZ_CLUSTER_KAFKA_PORT": str(clusters.settings.cluster_kafka_port),
             "BADBUZZ_CLUSTER_REDIS_PORT": str(clusters.settings.cluster_redis_port)}
    env = {k: v for k, v in os.environ.items() if not k.startswith("BADBUZZ_")} | ports | {"PYTHONPATH": str(REPO)}
    python = sys.executable
    script = (
        f'eval "$({python} -m badbuzz.cli services env --cluster)" && '
        f'{python} -c "from config.settings import Settings; s = Settings(_env_file=None); print(s.kafka_bootstrap, s.redis_mode, s.redis_url)" && '
        "echo $BADBUZZ_TOPIC_REPLICATION_FACTOR $BADBUZZ_TOPIC_MIN_INSYNC_REPLICAS"
    )
    out = subprocess.run(["bash", "-c", script], env=env, cwd=REPO, capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.splitlines() == [
        f"{clusters.bootstrap} cluster {clusters.settings.redis_url}",
        "3 2",
    ]
