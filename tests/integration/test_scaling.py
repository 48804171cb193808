"""Horizontal scaling on the real broker and Redis: two worker processes in one consumer
group share a 4-partition topic and the Redis counters. One of them is stopped with
SIGTERM while posts are flowing; its partitions move to the other, and every post is
still counted exactly once, with exactly one alert for the burst's incident."""
from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client.parser import text_string_to_metric_families

from badbuzz import replay as rp
from config.topics import ensure_topics
from counting.counters import Counters
from counting.terms import ScopeMatcher
from counting.windows import minute_of
from models.preprocess import preprocess
from models.scorer import load_scorer
from tests.conftest import free_port, running_worker, wait_for
from tests.integration.test_end_to_end import drain

pytestmark = pytest.mark.integration


async def scrape(port: int) -> dict[tuple[str, tuple], float]:
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                text = await response.text()
    except aiohttp.ClientError:
        return {}
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(text) for s in f.samples}


async def assigned(port: int) -> int:
    return int((await scrape(port)).get(("badbuzz_assigned_partitions", ()), 0))


async def committed(settings) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(settings.app_id)
    finally:
        await admin.close()
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == settings.topic_raw and meta.offset > 0)


async def test_two_workers_count_exactly_once_across_a_rebalance(isolated, tmp_path):
    settings = isolated.model_copy(update={"watch_terms": ["delay"], "topic_partitions": 4, "batch_size": 64})
    posts = rp.load_posts("airline", seed=3)
    calm, negatives = posts[:1000], [p for p in posts if p.negative]
    # 50 simulated minutes at 20 posts a minute; a burst of 500 negatives from minute 40.
    plan = rp.schedule(calm, negatives, [rp.Burst(at_min=40, count=500, duration_min=8)], per_minute=20)
    end_ms = int(time.time() * 1000)
    messages = rp.to_messages(plan, end_ms=end_ms, run_id="scale")
    first_phase, second_phase = messages[:700], messages[700:]
    await ensure_topics(settings, [settings.topic_raw, settings.topic_dlq, settings.topic_alerts])

    redis = aioredis.Redis.from_url(settings.redis_url)
    counters = Counters(redis, prefix=settings.redis_prefix, ttl_s=settings.counter_ttl_s)
    first, last = minute_of(end_ms - plan[-1].offset_ms), minute_of(end_ms)

    async def counted() -> int:
        return (await counters.window("all", last, last - first + 1)).total

    port_a, port_b = free_port(), free_port()
    timings = {}
    started = time.monotonic()
    with (
        running_worker(settings, tmp_path / "worker-a.log", BADBUZZ_WEB_PORT=str(port_a)) as a,
        running_worker(settings, tmp_path / "worker-b.log", BADBUZZ_WEB_PORT=str(port_b)) as b,
    ):

        async def shared_evenly():
            return await assigned(port_a) > 0 and await assigned(port_b) > 0 and await assigned(port_a) + await assigned(port_b) == 4

        await wait_for(shared_evenly, timeout=120, what="both workers to own partitions", process=a)
        split = (await assigned(port_a), await assigned(port_b))
        timings["start_s"] = time.monotonic() - started

        t0 = time.monotonic()
        await rp.produce(first_phase, settings=settings, topic=settings.topic_raw, rate=0)
        await wait_for(lambda: _equals(counted, len(first_phase)), timeout=90, what="the first phase to be counted", process=b)
        timings["first_phase_s"] = time.monotonic() - t0
        by_worker = {}

        async def both_recorded():
            for port in (port_a, port_b):
                by_worker[port] = (await scrape(port)).get(("badbuzz_posts_counted_total", ()), 0)
            return sum(by_worker.values()) == len(first_phase)

        await wait_for(both_recorded, timeout=30, what="both workers' metrics to show the first phase", process=b)
        counted_by_a, counted_by_b = by_worker[port_a], by_worker[port_b]

        # The second phase (with the burst) flows while worker A is stopped.
        t1 = time.monotonic()
        producing = asyncio.create_task(rp.produce(second_phase, settings=settings, topic=settings.topic_raw, rate=150))
        await asyncio.sleep(1.5)
        counted_by_a_at_stop = (await scrape(port_a))[("badbuzz_posts_counted_total", ())]
        a.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        assert await asyncio.to_thread(a.wait, 60) == 0, "worker A did not stop cleanly on SIGTERM"
        timings["a_shutdown_s"] = time.monotonic() - stopped_at

        await wait_for(lambda: _equals_int(assigned(port_b), 4), timeout=120, what="worker B to take over every partition", process=b)
        timings["rebalance_s"] = time.monotonic() - stopped_at
        await producing
        await wait_for(lambda: _equals(counted, len(messages)), timeout=120, what="every post to be counted", process=b)
        timings["second_phase_s"] = time.monotonic() - t1
        await wait_for(lambda: _at_least(committed(settings), len(messages)), timeout=60, what="every offset to be committed", process=b)
        after = await scrape(port_b)
        alerts = [orjson.loads(r.value) for r in await drain(settings, settings.topic_alerts)]
    timings["total_s"] = time.monotonic() - started

    # Exactly once: every minute of every scope holds exactly what the model says.
    scorer = load_scorer(settings.active_model_uri, tracking_uri=settings.tracking_uri, cache_dir=settings.home / "model-cache")
    bodies = [orjson.loads(value) for _, value, _ in messages]
    scores = scorer.score_batch([body["text"] for body in bodies])
    matcher = ScopeMatcher(settings.watch_terms)
    expected = Counter()
    for body, score in zip(bodies, scores):
        for scope in matcher.match(preprocess(body["text"])):
            expected[(scope, minute_of(body["created_at"]), "n")] += 1
            expected[(scope, minute_of(body["created_at"]), "neg")] += int(score >= scorer.info.threshold)
    got = Counter()
    for scope in matcher.scopes:
        for minute, bucket in (await counters.buckets(scope, range(first, last + 1))).items():
            got[(scope, minute, "n")] = bucket.total
            got[(scope, minute, "neg")] = bucket.negative
    assert +got == +expected
    assert sum(v for (scope, _, kind), v in got.items() if scope == "all" and kind == "n") == len(messages)
    await redis.aclose()

    assert split[0] + split[1] == 4 and min(split) >= 1
    # Both workers did part of the first phase.
    assert counted_by_a > 0 and counted_by_b > 0 and counted_by_a + counted_by_b == len(first_phase)
    # A was stopped mid-stream: it had counted part of the second phase.
    assert counted_by_a_at_stop > counted_by_a
    assert {dict(labels)["partition"]: v for (name, labels), v in after.items() if name == "badbuzz_consumer_lag_messages"} == {str(p): 0 for p in range(4)}

    opened = [alert for alert in alerts if alert["action"] == "opened"]
    assert [alert["scope"] for alert in opened if alert["scope"] == "all"] == ["all"], alerts
    assert len({alert["alert_id"] for alert in alerts}) == len(alerts), "an alert was announced twice"

    redelivered = after[("badbuzz_posts_duplicate_total", ())]
    print(
        f"\nscaling: {len(messages)} posts, partitions split {split[0]}+{split[1]}; workers up in {timings['start_s']:.1f}s; "
        f"phase 1 ({len(first_phase)} posts, 2 workers) counted in {timings['first_phase_s']:.1f}s; "
        f"worker A counted {counted_by_a_at_stop - counted_by_a:.0f} phase-2 posts, then stopped in {timings['a_shutdown_s']:.1f}s, "
        f"B owned all 4 partitions {timings['rebalance_s']:.1f}s after SIGTERM; "
        f"phase 2 ({len(second_phase)} posts at 150/s) counted in {timings['second_phase_s']:.1f}s; "
        f"{redelivered:.0f} redelivered posts ignored by B; total {timings['total_s']:.1f}s"
    )


async def _equals(read, expected: int) -> bool:
    return await read() == expected


async def _equals_int(value, expected: int) -> bool:
    return await value == expected


async def _at_least(value, expected: int) -> bool:
    return await value >= expected
