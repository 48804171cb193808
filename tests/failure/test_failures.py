"""Failure suite: the worker under outages, crashes and hostile input, with exact counts
afterwards (nothing lost, nothing counted twice). Runs its own private Kafka and Redis on
free ports so it can stop them without disturbing anything else.

Run alone with ``pytest -m failure``."""
from __future__ import annotations

import asyncio
import signal
import time

import orjson
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from badbuzz import services
from badbuzz.services import kafka as kafka_svc
from badbuzz.services import manager
from badbuzz.services import redis as redis_svc
from config.connections import shared_keyspace
from config.settings import Settings
from config.topics import ensure_topics
from counting.counters import Counters
from counting.windows import minute_of
from tests.conftest import running_worker, wait_for

pytestmark = [pytest.mark.failure, pytest.mark.integration]

MINUTE = 60_000


def posts(n: int, *, start: int = 0, base_ms: int | None = None) -> list[tuple[bytes, bytes]]:
    base_ms = base_ms or (int(time.time() * 1000) // MINUTE - 30) * MINUTE
    out = []
    for i in range(start, start + n):
        body = {"id": f"post-{i}", "text": f"@united flight {i} delayed again, awful service", "created_at": base_ms + (i % 20) * MINUTE}
        out.append((body["id"].encode(), orjson.dumps(body)))
    return out


async def produce(settings: Settings, records, *, topic: str | None = None, timeout_s: float = 60) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", request_timeout_ms=int(timeout_s * 1000))
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            await producer.start()
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
    try:
        for key, value in records:
            await producer.send(topic or settings.topic_raw, key=key, value=value)
        await producer.flush()
    finally:
        await producer.stop()


async def counted(settings: Settings) -> int:
    redis = aioredis.Redis.from_url(settings.redis_url)
    try:
        now_minute = minute_of(int(time.time() * 1000))
        return (await Counters(redis, prefix=settings.redis_prefix, ttl_s=1).window("all", now_minute + 5, 24 * 60)).total
    except (OSError, aioredis.ConnectionError):
        return -1
    finally:
        await redis.aclose()


async def exactly(settings: Settings, n: int, *, process, timeout: float = 90) -> None:
    async def reached():
        return await counted(settings) == n

    await wait_for(reached, timeout=timeout, what=f"exactly {n} posts counted", process=process)
    await asyncio.sleep(2)
    assert await counted(settings) == n, "more posts counted than were sent"


def stop_service(settings: Settings, svc) -> None:
    """Stop one of the private services (``settings`` must carry their home)."""
    pid = manager.live_pid(settings, svc)
    assert pid, f"{svc.__name__} is not running"
    manager._stop_pid(pid, svc.MARKER, 30)


async def test_redis_outage_loses_and_duplicates_nothing(private, scenario, tmp_path):
    await ensure_topics(scenario, [scenario.topic_raw, scenario.topic_dlq, scenario.topic_alerts])
    with running_worker(scenario, tmp_path / "worker.log") as worker:
        await produce(scenario, posts(300))
        await exactly(scenario, 300, process=worker)
        stop_service(private, redis_svc)
        await produce(scenario, posts(300, start=300))
        await asyncio.sleep(10)
        assert worker.poll() is None, "worker died while Redis was down"
        services.up(private, echo=lambda _: None)
        await exactly(scenario, 600, process=worker)


async def test_broker_restart_resumes_from_committed_offsets(private, scenario, tmp_path):
    await ensure_topics(scenario, [scenario.topic_raw, scenario.topic_dlq, scenario.topic_alerts])
    with running_worker(scenario, tmp_path / "worker.log") as worker:
        await produce(scenario, posts(300))
        await exactly(scenario, 300, process=worker)
        stop_service(private, kafka_svc)
        await asyncio.sleep(5)
        services.up(private, echo=lambda _: None)
        await produce(scenario, posts(300, start=300))
        await exactly(scenario, 600, process=worker, timeout=120)


async def test_worker_killed_mid_batch_recounts_nothing(scenario, tmp_path):
    settings = scenario.model_copy(update={"batch_size": 200})
    await ensure_topics(settings, [settings.topic_raw, settings.topic_dlq, settings.topic_alerts])
    await produce(settings, posts(4000))
    with running_worker(settings, tmp_path / "worker-1.log") as worker:
        async def partly():
            return 0 < await counted(settings) < 4000

        await wait_for(partly, timeout=90, interval=0.05, what="counting to start", process=worker)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    before_restart = await counted(settings)
    assert 0 < before_restart < 4000
    with running_worker(settings, tmp_path / "worker-2.log") as worker:
        await exactly(settings, 4000, process=worker, timeout=120)


async def test_poison_input_goes_to_the_dlq_and_the_worker_keeps_going(scenario, tmp_path):
    now = int(time.time() * 1000)
    poison = {
        b"not json at all": "invalid JSON",
        b'{"id": 1, "text": "x"': "invalid JSON",
        b"\xc0\xaf\xfe": "not valid UTF-8",
        b"[]": "expected a JSON object, got array",
        b"null": "expected a JSON object, got null",
        b'{"text": "no id"}': "missing field 'id'",
        b'{"id": {"a": 1}, "text": "object id"}': "field 'id' must be a string or integer, got object",
        b'{"id": 7}': "missing field 'text'",
        b'{"id": 8, "text": ["a"]}': "field 'text' must be a string, got array",
        b'{"id": 9, "text": "\\n\\t "}': "field 'text' is empty",
        b'{"id": 10, "text": "ok", "user": 5}': "field 'user' must be a string, got integer",
        b'{"id": 11, "text": "ok", "created_at": "2999-01-01T00:00:00Z"}': "is in the future",
        b'{"id": 12, "text": "ok", "created_at": 86400000}': "older than the counter retention",
        b'{"id": 13, "text": "ok", "created_at": "soon"}': "is not an ISO-8601 time",
        orjson.dumps({"id": 14, "text": "x" * 1_000_000}): "more than the limit of 10000",
    }
    valid = [
        orjson.dumps({"id": "v1", "text": "fine", "created_at": now - MINUTE, "unknown": {"nested": True}}),
        orjson.dumps({"id": "v1", "text": "the same id again", "created_at": now - MINUTE}),
        orjson.dumps({"id": 99, "text": "integer ids are fine", "created_at": now - 2 * MINUTE}),
    ]
    await ensure_topics(scenario, [scenario.topic_raw, scenario.topic_dlq, scenario.topic_alerts])
    await produce(scenario, [(b"k", raw) for raw in poison] + [(b"k", raw) for raw in valid])
    with running_worker(scenario, tmp_path / "worker.log") as worker:
        await exactly(scenario, 2, process=worker)
        dead = await drain(scenario, scenario.topic_dlq, expect=len(poison))
        assert worker.poll() is None
    assert sorted(r.value for r in dead) == sorted(poison)
    for record in dead:
        reason = dict(record.headers)["dlq.reason"].decode()
        assert poison[record.value] in reason, (record.value[:60], reason)


async def test_late_and_out_of_order_events(scenario, tmp_path):
    settings = scenario.model_copy(update={"topic_partitions": 1, "allowed_lateness_s": 1800})
    now = int(time.time() * 1000)
    newest = (now // MINUTE - 5) * MINUTE
    events = [
        {"id": "newest", "text": "newest post", "created_at": newest},
        {"id": "out-of-order", "text": "a bit older", "created_at": newest - 10 * MINUTE},
        {"id": "late-but-allowed", "text": "older, within lateness", "created_at": newest - 29 * MINUTE},
        {"id": "too-late", "text": "beyond the allowed lateness", "created_at": newest - 45 * MINUTE},
    ]
    await ensure_topics(settings, [settings.topic_raw, settings.topic_dlq, settings.topic_alerts], partitions=1)
    with running_worker(settings, tmp_path / "worker.log", BADBUZZ_ALLOWED_LATENESS_S="1800") as worker:
        # One at a time, so the newest is counted before the late ones arrive.
        await produce(settings, [(b"k", orjson.dumps(events[0]))])
        await exactly(settings, 1, process=worker)
        await produce(settings, [(b"k", orjson.dumps(e)) for e in events[1:]])
        await exactly(settings, 3, process=worker)
        dead = await drain(settings, settings.topic_dlq, expect=1)
    assert [orjson.loads(r.value)["id"] for r in dead] == ["too-late"]
    assert dict(dead[0].headers)["dlq.reason"].decode().startswith("late event")
    redis = aioredis.Redis.from_url(settings.redis_url)
    buckets = await Counters(redis, prefix=settings.redis_prefix, ttl_s=1).buckets("all", range(minute_of(newest) - 60, minute_of(newest) + 1))
    await redis.aclose()
    assert {m: b.total for m, b in buckets.items()} == {
        minute_of(newest): 1,
        minute_of(newest) - 10: 1,
        minute_of(newest) - 29: 1,
    }


async def drain(settings: Settings, topic: str, *, expect: int, timeout: float = 60):
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest", fetch_max_bytes=8 * 1024 * 1024)
    await consumer.start()
    records = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < expect and time.monotonic() < deadline:
            for part in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(part)
        for part in (await consumer.getmany(timeout_ms=1000)).values():
            records.extend(part)
    finally:
        await consumer.stop()
    return records


async def refuse_writes(settings: Settings) -> None:
    """The private Redis answers every write with OOM (reads still work)."""
    redis = aioredis.Redis.from_url(settings.redis_url)
    try:
        await redis.config_set("maxmemory-policy", "noeviction")
        await redis.config_set("maxmemory", "1")
    finally:
        await redis.aclose()


async def accept_writes(settings: Settings) -> None:
    redis = aioredis.Redis.from_url(settings.redis_url)
    try:
        await redis.config_set("maxmemory", "0")
    finally:
        await redis.aclose()


async def produce_steadily(settings: Settings, records, *, per_second: float) -> None:
    chunk = max(1, int(per_second / 10))
    for start in range(0, len(records), chunk):
        await produce(settings, records[start : start + chunk])
        await asyncio.sleep(0.1)


async def minute_counts(settings: Settings, records) -> tuple[dict[int, int], dict[int, int]]:
    """(counted, sent) posts per event minute."""
    sent: dict[int, int] = {}
    for _, value in records:
        minute = minute_of(orjson.loads(value)["created_at"])
        sent[minute] = sent.get(minute, 0) + 1
    redis = aioredis.Redis.from_url(settings.redis_url)
    try:
        buckets = await Counters(redis, prefix=settings.redis_prefix, ttl_s=1).buckets("all", range(min(sent) - 5, max(sent) + 6))
    finally:
        await redis.aclose()
    return {m: b.total for m, b in buckets.items()}, sent


def metric(settings: Settings, name: str) -> float:
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    with urlopen(f"http://127.0.0.1:{settings.web_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)


async def test_redis_refusing_writes_mid_stream_loses_nothing(private, scenario, tmp_path):
    records = posts(6000)
    await ensure_topics(scenario, [scenario.topic_raw, scenario.topic_dlq, scenario.topic_alerts])
    log_path = tmp_path / "worker.log"
    with running_worker(scenario, log_path) as worker:
        flowing = asyncio.ensure_future(produce_steadily(scenario, records, per_second=400))
        try:
            async def started():
                return await counted(scenario) > 500

            await wait_for(started, timeout=90, what="counting to start", process=worker)
            await refuse_writes(private)
            try:
                await asyncio.sleep(6)
                stalled = await counted(scenario)
                await asyncio.sleep(2)
                assert await counted(scenario) == stalled, "posts were counted while Redis refused writes"
                assert worker.poll() is None, "worker died while Redis refused writes"
            finally:
                await accept_writes(private)
            await flowing
        finally:
            flowing.cancel()
        await exactly(scenario, len(records), process=worker, timeout=120)
        assert metric(scenario, "badbuzz_batch_retries_total") > 0
    counts, sent = await minute_counts(scenario, records)
    assert counts == sent
    log = log_path.read_text()
    # One line when the outage starts, one when it ends: not one per retry.
    assert log.count("batch processing failing (oom") == 1, log[-4000:]
    assert log.count("batch processing recovered after") == 1


async def test_a_worker_stopped_while_redis_refuses_writes_stops_in_time_and_loses_nothing(private, scenario, tmp_path):
    records = posts(3000)
    await ensure_topics(scenario, [scenario.topic_raw, scenario.topic_dlq, scenario.topic_alerts])
    await produce(scenario, records[:1500])
    with running_worker(scenario, tmp_path / "worker-1.log") as worker:
        await exactly(scenario, 1500, process=worker)
        await refuse_writes(private)
        try:
            await produce(scenario, records[1500:])
            await asyncio.sleep(3)
            stopping = time.monotonic()
            worker.send_signal(signal.SIGTERM)
            await asyncio.to_thread(worker.wait, 40)
            took = time.monotonic() - stopping
        finally:
            await accept_writes(private)
    # Well within the 30 s an orchestrator waits (the in-flight batch gets 5 s).
    assert took < 20, f"the worker took {took:.0f}s to stop"
    assert await counted(scenario) == 1500
    with running_worker(scenario, tmp_path / "worker-2.log") as worker:
        await exactly(scenario, len(records), process=worker, timeout=120)
    counts, sent = await minute_counts(scenario, records)
    assert counts == sent


async def test_feedback_on_a_post_whose_id_is_wrong_keeps_the_wrong_set(private, scenario, tmp_path):
    from alerting.feedback import FeedbackStore, make_feedback

    # Every prediction kept, so feedback on any of these posts can be checked.
    settings = scenario.model_copy(update={"topic_feedback": f"{scenario.topic_raw}.feedback", "keep_predictions": "all"})
    now = int(time.time() * 1000)
    ids = ["wrong", "post:wrong", "a:b", "*", "{x}", "after"]
    records = [(i.encode(), orjson.dumps({"id": i, "text": "@united flight delayed again, awful service", "created_at": now - MINUTE})) for i in ids]
    await ensure_topics(settings, [settings.topic_raw, settings.topic_dlq, settings.topic_alerts, settings.topic_feedback])
    redis = aioredis.Redis.from_url(settings.redis_url)
    counters = Counters(redis, prefix=settings.redis_prefix, ttl_s=1)
    store = FeedbackStore(redis, prefix=settings.redis_prefix, ttl_s=600)
    try:
        with running_worker(settings, tmp_path / "worker.log") as worker:
            await produce(settings, records)
            await exactly(settings, len(ids), process=worker)
            # "after" goes last: once it is recorded, every feedback before it was handled.
            labels = {"wrong": "positive", "post:wrong": "negative", "a:b": "positive", "*": "positive", "{x}": "negative", "after": "positive"}
            feedback = [(i.encode(), make_feedback(i, labels[i], now_ms=int(time.time() * 1000)).to_json()) for i in ids]
            await produce(settings, feedback, topic=settings.topic_feedback)

            async def all_recorded():
                return await store.get("after") is not None

            await wait_for(all_recorded, timeout=60, what="the feedback to be recorded", process=worker)
            predictions = {i: await counters.prediction(i) for i in ids}
            expected_wrong = {i for i in ids if predictions[i].negative != (labels[i] == "negative")}
            assert await redis.type(f"{shared_keyspace(settings.redis_prefix)}:feedback:wrong") == b"zset"
            assert set(await store.wrong_since(0, int(time.time() * 1000))) == expected_wrong
            assert [(await store.get(i))["label"] for i in ids] == [labels[i] for i in ids]
            stopping = time.monotonic()
            worker.send_signal(signal.SIGTERM)
            await asyncio.to_thread(worker.wait, 40)
            assert time.monotonic() - stopping < 20
            assert worker.returncode == 0
    finally:
        await redis.aclose()


async def test_a_bug_stops_the_worker_without_committing_its_batch(scenario, tmp_path):
    import subprocess
    import sys

    from aiokafka.admin import AIOKafkaAdminClient

    from badbuzz.processes import settings_env
    from tests.conftest import REPO, worker_env_base

    settings = scenario.model_copy(update={"topic_partitions": 1})
    await ensure_topics(settings, [settings.topic_raw, settings.topic_dlq, settings.topic_alerts], partitions=1)
    records = posts(310)
    records[305] = (b"bug", orjson.dumps({**orjson.loads(records[305][1]), "text": "BUG"}))
    await produce(settings, records[:300])
    env = {k: v for k, v in worker_env_base().items() if not k.startswith("BADBUZZ_")} | settings_env(settings) | {"PYTHONPATH": str(REPO)}
    log_path = tmp_path / "buggy-worker.log"
    with log_path.open("w") as log:
        buggy = subprocess.Popen([sys.executable, str(REPO / "tests/failure/buggy_worker.py")], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        await exactly(settings, 300, process=buggy)
        await produce(settings, records[300:])
        await asyncio.to_thread(buggy.wait, 60)
    except BaseException:
        print(log_path.read_text()[-8000:])
        raise
    finally:
        if buggy.poll() is None:
            buggy.kill()
    assert buggy.returncode == 1
    assert "stopping the worker without committing it" in log_path.read_text()
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(settings.app_id)
    finally:
        await admin.close()
    # Committed at most up to the batch that failed (its posts may have come in two).
    [offset] = [o.offset for o in committed.values()]
    assert 300 <= offset <= 305
    # Nothing lost: a sound worker takes the held batch from the committed offset.
    with running_worker(settings, tmp_path / "worker.log") as worker:
        await exactly(settings, 310, process=worker)
