"""Scale-out figures (``badbuzz bench-cluster``): what counting costs Redis per post, on the
standalone Redis and on the local Redis Cluster; the TF-IDF drain rate with 1, 2 and 3
workers on the local 3-broker Kafka cluster and 6-node Redis Cluster; and how long the
partitions of a SIGKILLed worker stay idle. The clusters are started if they are not
running (``badbuzz services up --cluster``)."""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from badbuzz.processes import free_port, start_worker, stop_worker
from badbuzz.services import cluster
from benchmarks.keys import delete_prefix
from benchmarks.redis_cost import DENSITIES, PARTITIONS, redis_counting_cost
from benchmarks.run import Report, _messages, _produce, registered_models, sample_texts
from config.connections import redis_client
from config.settings import Settings
from config.topics import delete_topics, ensure_topics
from counting.counters import Counters

Say = Callable[[str], None]


def cluster_settings(settings: Settings) -> Settings:
    return settings.model_copy(update=dict(
        kafka_bootstrap=cluster.bootstrap(settings), redis_mode="cluster", redis_url=cluster.cluster_redis_url(settings),
        topic_replication_factor=3, topic_min_insync_replicas=2,
    ))


async def _end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or range(PARTITIONS)]
        return {tp.partition: offset for tp, offset in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()


async def cluster_drain(settings: Settings, model_uri: str, n: int, *, workers: int, kill_one: bool, log_dir: Path) -> dict:
    """Pre-load ``n`` posts on 12 partitions, start ``workers`` workers and time the drain
    (first post counted to last). ``kill_one``: SIGKILL a worker a third of the way and
    measure how long until every partition not yet drained is counted again."""
    run = f"benchc-{uuid.uuid4().hex[:8]}"
    s = settings.model_copy(update=dict(
        topic_raw=f"{run}.raw", topic_dlq=f"{run}.dlq", topic_alerts=f"{run}.alerts", redis_prefix=f"bench:{run}", app_id=f"badbuzz-{run}",
        model_uri=model_uri, topic_partitions=PARTITIONS,
    ))
    await ensure_topics(s, [s.topic_raw, s.topic_dlq, s.topic_alerts], partitions=PARTITIONS)
    await _produce(s, s.topic_raw, _messages(sample_texts(n), run))
    ends = await _end_offsets(s, s.topic_raw)
    redis = redis_client(s)
    counters = Counters(redis, prefix=s.redis_prefix, ttl_s=1)
    procs = [start_worker(s.model_copy(update={"web_port": free_port()}), log_dir / f"{run}-w{i}.log") for i in range(workers)]
    recovery_s = None
    try:
        first_at = None
        deadline = time.monotonic() + 900
        while True:
            await asyncio.sleep(0.1)
            offsets = await counters.counted_offsets(list(ends))
            count = sum(offsets.get(p, -1) + 1 for p in ends)
            now = time.perf_counter()
            if first_at is None and count > 0:
                first_at, first_count = now, count
            if kill_one and recovery_s is None and count >= n // 3:
                procs[-1].kill()
                procs[-1].wait()
                killed_at, frozen = time.perf_counter(), offsets
                recovery_s = await _until_all_advance(counters, ends, frozen) - killed_at
                continue
            if count >= n:
                break
            alive = [p for p in procs if p.poll() is None]
            if len(alive) < workers - (1 if kill_one and recovery_s is not None else 0) or time.monotonic() > deadline:
                raise RuntimeError(f"cluster run stalled at {count}/{n}; see {log_dir}")
        drained = max(n - first_count, 1)
        row = {"workers": workers, "posts": n, "posts_per_s": drained / max(now - first_at, 1e-9)}
        if kill_one:
            row["partitions_idle_after_kill_s"] = recovery_s
        return row
    finally:
        for p in procs:
            stop_worker(p)
        await delete_prefix(redis, s.redis_prefix)
        await redis.aclose()
        await delete_topics(s, [s.topic_raw, s.topic_dlq, s.topic_alerts])


async def _until_all_advance(counters: Counters, ends: dict[int, int], frozen: dict[int, int]) -> float:
    """When every partition left with posts to count has been counted further."""
    waiting = {p for p, end in ends.items() if frozen.get(p, -1) + 1 < end}
    deadline = time.monotonic() + 300
    while waiting and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        now = await counters.counted_offsets(sorted(waiting))
        waiting = {p for p in waiting if now.get(p, -1) <= frozen.get(p, -1) and now.get(p, -1) + 1 < ends[p]}
    if waiting:
        raise RuntimeError(f"partitions {sorted(waiting)} were never counted again after the kill")
    return time.perf_counter()


async def run_cluster_bench(settings: Settings, *, quick: bool, out_dir: Path, say: Say = print) -> Report:
    report = Report()
    scale = 0.25 if quick else 1.0
    say("local clusters ...")
    cluster.up(settings, echo=say)
    on_cluster = cluster_settings(settings)
    n = int(200_000 * scale)
    for target in (settings, on_cluster):
        for per_minute in DENSITIES:
            say(f"Redis cost of counting ({target.redis_mode}, {n} posts at {per_minute}/min) ...")
            row = await redis_counting_cost(target, n, per_minute=per_minute)
            report.add("Redis cost of counting (in process, batches of 1,024 over 12 partitions)", row, say)
    models = registered_models(settings)
    if "tfidf" not in models:
        raise ValueError("no registered tfidf model: run `badbuzz train --family tfidf` first")
    log_dir = settings.home / "bench-logs"
    drain_n = int(30_000 * scale)
    for workers in (1, 2, 3):
        say(f"cluster drain, {workers} worker(s) ...")
        row = await cluster_drain(on_cluster, models["tfidf"], drain_n, workers=workers, kill_one=False, log_dir=log_dir)
        report.add("Drain on the local clusters (tfidf, 12 partitions, RF 3)", row, say)
    say("cluster recovery: 3 workers, one SIGKILLed ...")
    row = await cluster_drain(on_cluster, models["tfidf"], drain_n, workers=3, kill_one=True, log_dir=log_dir)
    report.add("Recovery on the local clusters (3 workers, one SIGKILLed a third of the way)", row, say)
    report.note(
        "All processes (3 brokers, 6 Redis nodes, the workers and this client) share one 2-core machine: the drain rates show how the "
        "design scales out, not what separate machines would reach."
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "cluster-results.md").write_text(report.markdown())
    (out_dir / "cluster-results.json").write_text(json.dumps({"sections": report.sections, "notes": report.notes}, indent=2))
    say(f"wrote {out_dir / 'cluster-results.md'}")
    return report
