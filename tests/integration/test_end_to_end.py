"""The walking skeleton on the real broker and Redis: a worker process consumes
tweets.raw, and the counts, the DLQ and the alerts topic are checked exactly."""
from __future__ import annotations

import time
from collections import Counter
from datetime import datetime

import orjson
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from badbuzz import replay as rp
from config.topics import ensure_topics
from counting.counters import Counters
from counting.terms import ScopeMatcher
from counting.windows import minute_of
from models.preprocess import preprocess
from models.scorer import load_scorer
from tests.conftest import running_worker, wait_for

pytestmark = pytest.mark.integration

MINUTE = 60_000


async def produce(settings, records):
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in records:
            await producer.send(settings.topic_raw, key=key, value=value)
        await producer.flush()
    finally:
        await producer.stop()


async def drain(settings, topic, *, idle_ms=3000):
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    records = []
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=idle_ms)
            if not batch:
                return records
            for part in batch.values():
                records.extend(part)
    finally:
        await consumer.stop()


async def total_counted(counters, first_minute, last_minute):
    stats = await counters.window("all", last_minute, last_minute - first_minute + 1)
    return stats.total


def score_locally(settings, texts):
    scorer = load_scorer(settings.active_model_uri, tracking_uri=settings.tracking_uri, cache_dir=settings.home / "model-cache")
    return scorer.score_batch(texts), scorer.info.threshold


async def test_exact_counts_duplicates_and_dead_letters(isolated, tmp_path):
    settings = isolated
    now = int(time.time() * 1000)
    base = (now // MINUTE - 20) * MINUTE
    texts = [
        "@united my flight is delayed again, worst airline",
        "@JetBlue thanks for the smooth flight and friendly crew",
        "@SouthwestAir flight cancelled and no refund, terrible",
        "@AmericanAir lost luggage, nobody answers the phone",
        "@VirginAmerica landed early, great service",
    ]
    valid = []
    for i in range(200):
        body = {"id": f"p{i}", "text": f"{texts[i % 5]} #{i}", "created_at": base + (i % 10) * MINUTE + i * 100, "user": f"@someone{i}"}
        valid.append(body)
    duplicates = [dict(valid[i], text="a different text for the same id") for i in range(0, 200, 10)]
    malformed = [
        b'{"id": 1, "text": "unterminated',
        b'{"id": "m2"}',
        b'{"id": false, "text": "bool id"}',
        b'{"id": "m4", "text": ""}',
        b"\xc3\x28 invalid utf-8",
        b'{"id": "m6", "text": "from the future", "created_at": "2999-01-01T00:00:00Z"}',
    ]
    await ensure_topics(settings, [settings.topic_raw, settings.topic_dlq, settings.topic_alerts])
    await produce(settings, [(b["id"].encode(), orjson.dumps(b)) for b in valid])
    await produce(settings, [(b"bad", m) for m in malformed])
    await produce(settings, [(b["id"].encode(), orjson.dumps(b)) for b in duplicates])

    redis = aioredis.Redis.from_url(settings.redis_url)
    counters = Counters(redis, prefix=settings.redis_prefix, ttl_s=settings.counter_ttl_s)
    first, last = minute_of(base), minute_of(base) + 10
    with running_worker(settings, tmp_path / "worker.log") as worker:
        await wait_for(lambda: total_counted(counters, first, last), timeout=90, what="the first post to be counted", process=worker)
        dlq = []

        async def dlq_complete():
            dlq[:] = await drain(settings, settings.topic_dlq, idle_ms=500)
            return len(dlq) >= len(malformed)

        await wait_for(dlq_complete, timeout=60, what="the dead letters", process=worker)
        # Duplicates were produced last: once they are through, nothing else is in flight.
        await wait_for(
            lambda: _all_consumed(settings, len(valid) + len(malformed) + len(duplicates)), timeout=60, what="every message to be consumed", process=worker
        )

    scores, threshold = score_locally(settings, [b["text"] for b in valid])
    matcher = ScopeMatcher(settings.watch_terms)
    expected = Counter()
    for body, score in zip(valid, scores):
        minute = minute_of(body["created_at"])
        for scope in matcher.match(preprocess(body["text"])):
            expected[(scope, minute, "n")] += 1
            expected[(scope, minute, "neg")] += int(score >= threshold)
    for scope in matcher.scopes:
        buckets = await counters.buckets(scope, range(first, last + 1))
        got = Counter()
        for minute, bucket in buckets.items():
            got[(scope, minute, "n")] = bucket.total
            got[(scope, minute, "neg")] = bucket.negative
        want = Counter({k: v for k, v in expected.items() if k[0] == scope and v})
        assert +got == want, scope
    assert sum(v for (s, _, kind), v in expected.items() if s == "all" and kind == "n") == 200
    assert expected[("term:delay", minute_of(valid[0]["created_at"]), "n")] > 0

    assert sorted(r.value for r in dlq) == sorted(malformed)
    reasons = {r.value: dict(r.headers)["dlq.reason"].decode() for r in dlq}
    assert reasons[malformed[0]].startswith("invalid JSON")
    assert reasons[malformed[1]] == "missing field 'text'"
    assert reasons[malformed[2]] == "field 'id' must be a string or integer, got boolean"
    assert reasons[malformed[3]] == "field 'text' is empty"
    assert reasons[malformed[4]] == "not valid UTF-8"
    assert "in the future" in reasons[malformed[5]]
    assert all(dict(r.headers)["dlq.topic"].decode() == settings.topic_raw for r in dlq)
    await redis.aclose()


async def _all_consumed(settings, produced: int) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(settings.app_id)
    finally:
        await admin.close()
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == settings.topic_raw) >= produced


async def test_one_alert_for_a_burst_and_none_for_calm_traffic(isolated, tmp_path):
    settings = isolated.model_copy(update={"watch_terms": ["delay"]})
    posts = rp.load_posts("airline", seed=11)
    calm, negatives = posts[:1200], [p for p in posts if p.negative]
    burst = rp.Burst(at_min=45, count=600, duration_min=10, term="delay")
    plan = rp.schedule(calm, negatives, [burst], per_minute=20)
    end_ms = int(time.time() * 1000)
    messages = rp.to_messages(plan, end_ms=end_ms, run_id="burst")
    start_ms = end_ms - plan[-1].offset_ms
    burst_start_ms = start_ms + 45 * MINUTE

    await ensure_topics(settings, [settings.topic_raw, settings.topic_dlq, settings.topic_alerts])
    await rp.produce(messages, settings=settings, topic=settings.topic_raw, rate=0)
    redis = aioredis.Redis.from_url(settings.redis_url)
    counters = Counters(redis, prefix=settings.redis_prefix, ttl_s=settings.counter_ttl_s)
    first, last = minute_of(start_ms), minute_of(end_ms)

    async def all_counted():
        return await total_counted(counters, first, last) == len(messages)

    with running_worker(settings, tmp_path / "worker.log") as worker:
        await wait_for(all_counted, timeout=120, what=f"{len(messages)} posts to be counted", process=worker)
        alerts = [orjson.loads(r.value) for r in await drain(settings, settings.topic_alerts)]

    opened = [a for a in alerts if a["action"] == "opened"]
    # Posts that mention delays are negative anyway: the burst lifts their volume, not
    # their negative rate, so only the global scope may open on rate. (Volume needs an
    # hour of history before the alert window: the burst comes too early for it.)
    assert [(a["signal"], a["scope"]) for a in opened] == [("negative_rate", "all")], alerts
    produced = {key.decode(): orjson.loads(value)["text"] for key, value, _ in messages}
    for alert in opened:
        window_end = datetime.fromisoformat(alert["window_end"].replace("Z", "+00:00")).timestamp() * 1000
        assert window_end > burst_start_ms, "alert raised before the burst began"
        assert alert["rate"] - alert["baseline"] >= settings.alert_margin - 1e-9
        assert alert["short_rate"] - alert["baseline"] >= settings.alert_margin - 1e-9
        assert alert["volume"] >= settings.alert_min_volume and alert["p_value"] <= settings.alert_p_value
        assert alert["model"].startswith("badbuzz-sentiment v1 (tfidf)")
        assert alert["model_version"] == "1"
        assert alert["top_terms"] and all(not t.startswith("@") for t in alert["top_terms"])
        assert alert["drivers"][0]["count"] > alert["drivers"][0]["baseline_count"]
        # Examples are ids of posts counted as negative; ids only, never text or handles.
        examples = alert["example_post_ids"]
        assert len(examples) == 5 and set(examples) <= set(produced)
        scores, threshold = score_locally(settings, [produced[i] for i in examples])
        assert all(score >= threshold for score in scores)
    # Each incident announces each change at most once, in sequence.
    assert len({a["alert_id"] for a in alerts}) == len(alerts)
    for incident in {a["incident_id"] for a in alerts}:
        assert [a["seq"] for a in alerts if a["incident_id"] == incident] == list(range(1, 1 + sum(a["incident_id"] == incident for a in alerts)))
    await redis.aclose()
