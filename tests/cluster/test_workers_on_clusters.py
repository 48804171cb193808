"""Three workers on a 3-broker Kafka cluster and a 6-node Redis Cluster, while a replayed
stream with a bad-buzz burst flows: the broker leading a partition is SIGKILLed, then the
Redis master serving some partitions' counters (its replica takes over), then a worker.
Afterwards every minute holds exactly the posts sent and each alert reached the alerts
topic once."""
from __future__ import annotations

import asyncio
import signal
import time
import uuid

import orjson
import pytest

from badbuzz import replay as rp
from config.connections import redis_client
from config.settings import Settings
from config.topics import ensure_topics
from counting.counters import Counters, partition_tag
from counting.windows import minute_of
from tests.conftest import free_port, running_worker, wait_for
from tests.failure.test_failures import drain, produce

pytestmark = [pytest.mark.cluster, pytest.mark.integration]

PARTITIONS = 6


async def minute_counts(settings: Settings, minutes: range) -> dict[int, int]:
    redis = redis_client(settings)
    try:
        buckets = await Counters(redis, prefix=settings.redis_prefix, ttl_s=1).buckets("all", minutes)
    finally:
        await redis.aclose()
    return {m: b.total for m, b in buckets.items()}


async def test_three_workers_count_exactly_and_announce_once_through_broker_redis_and_worker_kills(clusters, model_home, tmp_path):
    tag = uuid.uuid4().hex[:8]
    settings = clusters.settings.model_copy(update=dict(
        home=model_home, topic_raw=f"c-{tag}.raw", topic_dlq=f"c-{tag}.dlq", topic_alerts=f"c-{tag}.alerts", topic_feedback=f"c-{tag}.feedback",
        redis_prefix=f"c{tag}", app_id=f"badbuzz-c-{tag}", topic_partitions=PARTITIONS, watch_terms=["delay"],
    ))
    posts = rp.load_posts("airline", seed=7)
    calm, negatives = posts[:1200], [p for p in posts if p.negative]
    plan = rp.schedule(calm, negatives, [rp.Burst(at_min=45, count=600, duration_min=10, term="delay")], per_minute=20)
    records = [(key, value) for key, value, _ in rp.to_messages(plan, end_ms=int(time.time() * 1000), run_id=tag)]
    sent: dict[int, int] = {}
    for _, value in records:
        minute = minute_of(orjson.loads(value)["created_at"])
        sent[minute] = sent.get(minute, 0) + 1
    minutes = range(min(sent), max(sent) + 1)
    phases = [records[i : i + len(records) // 4] for i in range(0, len(records), len(records) // 4)]
    await ensure_topics(settings, [settings.topic_raw, settings.topic_dlq, settings.topic_alerts, settings.topic_feedback])

    async def counted() -> int:
        return sum((await minute_counts(settings, minutes)).values())

    workers = [settings.model_copy(update={"web_port": free_port()}) for _ in range(3)]
    with (
        running_worker(workers[0], tmp_path / "worker-0.log") as w0,
        running_worker(workers[1], tmp_path / "worker-1.log") as w1,
        running_worker(workers[2], tmp_path / "worker-2.log") as w2,
    ):
        await produce(settings, phases[0])
        await wait_for(lambda: _at_least(counted, len(phases[0]) // 2), timeout=180, what="the workers to count", process=w0)

        leader = await clusters.leader_of(settings.topic_raw, 0)
        clusters.kill_broker(leader)
        await produce(settings, phases[1])

        counters_master = clusters.redis_master_for(f"{partition_tag(settings.redis_prefix, 0)}:o")
        clusters.kill_redis(counters_master)
        await produce(settings, phases[2])
        clusters.wait_redis_failover()

        w2.send_signal(signal.SIGKILL)
        w2.wait()
        for phase in phases[3:]:
            await produce(settings, phase)

        async def all_counted():
            return await counted() == len(records)

        await wait_for(all_counted, timeout=300, what=f"all {len(records)} posts counted", process=w1)
        await asyncio.sleep(3)  # room for a late double count or a duplicate alert to show up
        assert w0.poll() is None and w1.poll() is None, "a surviving worker died"
        alerts = [orjson.loads(r.value) for r in await drain(settings, settings.topic_alerts, expect=1, timeout=15)]

    assert await minute_counts(settings, minutes) == sent
    alert_ids = [a["alert_id"] for a in alerts]
    assert any(a["action"] == "opened" and a["signal"] == "negative_rate" for a in alerts), alerts
    assert len(alert_ids) == len(set(alert_ids)), "an alert reached the alerts topic twice"
    clusters.heal()


async def _at_least(counted, n: int) -> bool:
    return await counted() >= n
