"""Counting partitioned by Kafka partition, exactly once without a key per post: the
stored offset skips redelivered messages, the dedup window skips a post id the feed sends
twice, readers sum the partitions, and the dedup window costs Redis 8 bytes a post.
Run against the standalone Redis and against a Redis Cluster (one node serving every
slot still refuses cross-slot commands and needs keys to route)."""
from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from counting.counters import Counters, ScoredPost

pytestmark = pytest.mark.integration

MINUTE = 60_000


@pytest.fixture(params=["standalone", "cluster"])
async def redis(request, live_services):
    if request.param == "cluster":
        client = RedisCluster.from_url(request.getfixturevalue("one_node_cluster"))
    else:
        client = aioredis.Redis.from_url(live_services[1])
    yield client
    await client.aclose()


@pytest.fixture
def prefix():
    return f"test:parts:{uuid.uuid4().hex[:10]}"


def post(post_id: str, offset: int, minute: int, *, negative: bool = False, scopes=("all",), terms=()) -> ScoredPost:
    return ScoredPost(post_id, minute * MINUTE + 1, 0.9 if negative else 0.1, negative, scopes, terms, offset=offset)


async def test_a_redelivered_batch_is_skipped_by_offset_and_the_rest_of_it_counted(redis, prefix):
    counters = Counters(redis, prefix=prefix, ttl_s=600)
    minute = int(time.time() // 60)
    first = [post(f"a{i}", i, minute) for i in range(10)]
    assert await counters.count_new(first, partition=3, through_offset=9) == list(range(10))
    # A worker killed after counting: the next one reads offsets 5..14 again.
    again = [post(f"a{i}", i, minute) for i in range(5, 15)]
    assert await counters.count_new(again, partition=3, through_offset=14) == [5, 6, 7, 8, 9]
    assert await counters.counted_offsets([3, 4]) == {3: 14}
    assert (await counters.window("all", minute, 1)).total == 15


async def test_the_same_post_id_from_the_feed_counts_once_within_the_window_only(redis, prefix):
    counters = Counters(redis, prefix=prefix, ttl_s=600, dedup_window_s=60)
    minute = int(time.time() // 60)
    now = int(time.time() * 1000)
    assert len(await counters.count_new([post("dup", 0, minute), post("dup", 1, minute)], through_offset=1, arrived_ms=now)) == 1
    # The feed sends it again at a new offset, 50 s later: still a duplicate.
    assert await counters.count_new([post("dup", 2, minute)], through_offset=2, arrived_ms=now + 50_000) == []
    # Two windows later it is a new post as far as the counters can tell (documented).
    assert await counters.count_new([post("dup", 3, minute)], through_offset=3, arrived_ms=now + 130_000) == [0]
    assert (await counters.window("all", minute, 1)).total == 2


async def test_readers_sum_the_partitions_and_a_minute_is_live_once(redis, prefix):
    counters = Counters(redis, prefix=prefix, ttl_s=600)
    minute = int(time.time() // 60) - 3
    for partition in range(3):
        posts = [post(f"p{partition}-{i}", i, minute, negative=i < 2, scopes=("all", "term:bag"), terms=("bag",) if i < 2 else ()) for i in range(4)]
        await counters.count_new(posts, partition=partition, through_offset=3)
    await counters.count_new([post("late", 4, minute + 1)], partition=1, through_offset=4)
    window = await counters.window("all", minute + 1, 2)
    assert (window.total, window.negative) == (13, 6)
    assert await counters.term_counts("term:bag", range(minute, minute + 1)) == {"bag": 6}
    assert await counters.partitions() == [0, 1, 2]
    hour = minute // 60
    (_, hours), = (await counters.snapshot(["all"], range(0), [hour])).values()
    live = 2 if (minute + 1) // 60 == hour else 1
    assert (hours[hour].total, hours[hour].live_minutes) == (13 if live == 2 else 12, live)
    assert await counters.watermark_ms() == (minute + 1) * MINUTE + 1


async def test_the_dedup_window_costs_redis_eight_bytes_a_post(redis, prefix):
    counters = Counters(redis, prefix=prefix, ttl_s=600)
    minute = int(time.time() // 60)
    offset = 0
    for _ in range(60):
        posts = [post(uuid.uuid4().hex, offset + i, minute) for i in range(1000)]
        offset += len(posts)
        await counters.count_new(posts, through_offset=offset - 1)
    assert (await counters.window("all", minute, 1)).total == 60_000
    keys = [k async for k in redis.scan_iter(match="{" + prefix + ":p0}:d:*", count=1000)]
    stored = [len(batch) for k in keys for batch in await redis.hvals(k)]
    # Each batch of 1,000 in four values of at most 255 hashes (sized to fit an allocation).
    assert sum(stored) == 8 * 60_000 and len(stored) == 60 * 4 and max(stored) == 8 * 255
    # And they still know every id, also to another process.
    assert all(await Counters(redis, prefix=prefix, ttl_s=600).counted([p.id for p in posts]))


async def test_counts_redis_lost_stop_the_count_and_resumption_starts_at_redis_offset(redis, prefix):
    from faust.types import TP

    from counting.counters import CountsLost, partition_tag
    from stream.assignment import resume_offsets

    counters = Counters(redis, prefix=prefix, ttl_s=600)
    minute = int(time.time() // 60)
    await counters.count_new([post(f"a{i}", i, minute) for i in range(10)], partition=2, through_offset=9)
    # A failover ahead of replication: the promoted replica had the partition through offset 4.
    await redis.hset(f"{partition_tag(prefix, 2)}:o", "o", 4)
    with pytest.raises(CountsLost, match="counted through offset 4, but this worker counted it through 9"):
        await counters.count_new([post(f"a{i}", i, minute) for i in range(10, 13)], partition=2, through_offset=12, expected_through=9)
    assert (await counters.window("all", minute, 1)).total == 10
    assigned = {TP("raw", 2), TP("raw", 5), TP("other", 2)}
    assert await resume_offsets(counters, "raw", assigned) == {TP("raw", 2): 5}



async def test_a_worker_recounts_what_redis_forgot_though_kafka_had_it_committed(isolated, tmp_path):
    """Redis restored to an older state (counts and offset as of offset 59) while Kafka has
    all 100 posts committed: a worker given the partition reads from offset 60 again."""
    import orjson
    from aiokafka import AIOKafkaProducer

    from benchmarks.keys import delete_prefix
    from config.topics import ensure_topics
    from tests.conftest import running_worker, wait_for

    settings = isolated.model_copy(update={"topic_partitions": 1})
    await ensure_topics(settings, [settings.topic_raw, settings.topic_dlq, settings.topic_alerts, settings.topic_feedback], partitions=1)
    minute = int(time.time() // 60) - 5
    bodies = [{"id": f"r{i}", "text": f"flight {i} on time, thanks", "created_at": minute * MINUTE + i} for i in range(100)]
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for body in bodies:
            await producer.send(settings.topic_raw, key=body["id"].encode(), value=orjson.dumps(body))
        await producer.flush()
    finally:
        await producer.stop()
    redis = aioredis.Redis.from_url(settings.redis_url)
    counters = Counters(redis, prefix=settings.redis_prefix, ttl_s=600)

    async def total() -> int:
        return (await counters.window("all", minute, 1)).total

    try:
        with running_worker(settings, tmp_path / "first.log") as worker:
            await wait_for(lambda: _equals(total, 100), timeout=90, what="the 100 posts counted", process=worker)
        await delete_prefix(redis, settings.redis_prefix)
        restored = Counters(redis, prefix=settings.redis_prefix, ttl_s=600)
        await restored.count_new([post(b["id"], i, minute) for i, b in enumerate(bodies[:60])], through_offset=59)
        assert await total() == 60
        with running_worker(settings, tmp_path / "second.log") as worker:
            await wait_for(lambda: _equals(total, 100), timeout=90, what="the 40 forgotten posts counted again", process=worker)
            await asyncio.sleep(2)
            assert await total() == 100
            assert await counters.counted_offsets([0]) == {0: 99}
    finally:
        await delete_prefix(redis, settings.redis_prefix)
        await redis.aclose()


async def _equals(read, n: int) -> bool:
    return await read() == n
