"""``badbuzz demo``: the whole slice on loopback services, narrated.

Each run gets its own topics, consumer group and Redis prefix, so runs never see each
other's posts or counters."""
from __future__ import annotations

import asyncio
import logging
import subprocess
import time

import orjson

from badbuzz import replay as rp
from badbuzz import services
from badbuzz.processes import free_port, start_worker, stop_worker
from config.connections import kafka_options, redis_client
from config.settings import Settings
from config.topics import ensure_topics
from counting.counters import Counters
from counting.windows import GLOBAL_SCOPE, SLIDING_WINDOWS_MIN, minute_of
from models.scorer import ModelError, load_scorer

MALFORMED = [
    b'{"id": 1, "text": "unterminated',
    b'{"id": 2}',
    b'{"id": true, "text": "an id must be a string or integer"}',
    b"\xff\xfe not utf-8",
]


def say(line: str = "") -> None:
    print(line, flush=True)


def run_demo(base: Settings, *, rate: float, calm: int, burst_size: int, keep_services: bool) -> bool:
    was_running = all(s.running for s in services.status(base).values())
    for line in services.up(base):
        say(line)
    try:
        _ensure_champion(base)
        return asyncio.run(_run(base, rate=rate, calm=calm, burst_size=burst_size))
    finally:
        if not keep_services and not was_running:
            for line in services.down(base):
                say(line)


def _ensure_champion(settings: Settings) -> None:
    try:
        scorer = load_scorer(settings.active_model_uri, tracking_uri=settings.tracking_uri, cache_dir=settings.home / "model-cache")
        say(f"model: {scorer.info.display}")
    except ModelError:
        say("no champion model yet: training the TF-IDF baseline on the airline corpus (about a minute)")
        from training.train import train

        result = train("tfidf", "airline", "negative_vs_rest", settings, progress=say)
        say(f"registered {result.registered_name} v{result.version} as champion")


async def _run(base: Settings, *, rate: float, calm: int, burst_size: int) -> bool:
    # Fresh topics spend their first second electing leaders; the clients retry on their
    # own, and the retry chatter would bury the narrative.
    for chatty in ("aiokafka.consumer.fetcher", "aiokafka.producer.sender"):
        logging.getLogger(chatty).setLevel(logging.CRITICAL)
    run = time.strftime("demo-%Y%m%d-%H%M%S")
    settings = base.model_copy(
        update=dict(
            topic_raw=f"{run}.tweets.raw",
            topic_dlq=f"{run}.tweets.dlq",
            topic_alerts=f"{run}.alerts",
            redis_prefix=f"bbdemo:{run}",
            app_id=f"badbuzz-{run}",
        )
    )
    posts = rp.load_posts("airline")
    calm_posts = posts[:calm]
    per_minute = 40.0
    calm_minutes = calm / per_minute
    # A storm has a subject: lost and delayed bags, drawn from real negative posts.
    burst = rp.Burst(at_min=round(calm_minutes * 0.6), count=burst_size, duration_min=10, term="bag")
    plan = rp.schedule(calm_posts, [p for p in posts if p.negative], [burst], per_minute)
    messages = rp.to_messages(plan, end_ms=int(time.time() * 1000), run_id=run)
    expected = len(messages)

    await ensure_topics(settings, [settings.topic_raw, settings.topic_dlq, settings.topic_alerts])
    log_path = settings.home / "demo" / f"{run}-worker.log"
    worker = start_worker(settings.model_copy(update={"web_port": free_port()}), log_path)
    say(f"worker started (pid {worker.pid}, log {log_path})")
    say(
        f"replaying {calm} calm airline posts ({calm_minutes:.0f} simulated minutes at {per_minute:g}/min) "
        f"with a burst of {burst_size} negative posts about bags at minute {burst.at_min:g} over {burst.duration_min:g} min, "
        f"plus {len(MALFORMED)} malformed messages, at {rate:g} posts/s"
    )
    redis = redis_client(settings)
    counters = Counters(redis, prefix=settings.redis_prefix, ttl_s=settings.counter_ttl_s)
    alerts: list[dict] = []
    watcher = asyncio.create_task(_watch_alerts(settings, alerts))
    try:
        await rp.produce(
            [(b"bad", value, False) for value in MALFORMED], settings=settings, topic=settings.topic_raw, rate=0
        )
        producer = asyncio.create_task(rp.produce(messages, settings=settings, topic=settings.topic_raw, rate=rate))
        counted = await _narrate(counters, producer, expected, worker, alerts)
        await asyncio.sleep(1.0)
        dead = await _count_topic(settings, settings.topic_dlq)
    finally:
        watcher.cancel()
        stop_worker(worker)
        await redis.aclose()
    say()
    say(f"counted {counted}/{expected} posts, {dead} malformed messages in {settings.topic_dlq}")
    opened = [a for a in alerts if a["action"] == "opened"]
    say(f"alerts: {len(opened)} incident(s) opened, {len(alerts)} alert message(s) on {settings.topic_alerts}")
    if not opened:
        say("no alert was raised for the injected burst: see the worker log above")
    return bool(opened) and counted == expected


async def _narrate(counters: Counters, producer: asyncio.Task, expected: int, worker: subprocess.Popen, alerts: list[dict]) -> int:
    shown = 0
    counted = 0
    deadline = None
    while True:
        await asyncio.sleep(2.0)
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited with code {worker.returncode}; see its log")
        watermark = await counters.watermark_ms()
        if watermark:
            windows = await counters.windows(GLOBAL_SCOPE, minute_of(watermark), SLIDING_WINDOWS_MIN)
            counted = (await counters.window(GLOBAL_SCOPE, minute_of(watermark), 24 * 60)).total
            rates = "  ".join(f"{m:>2}m {w.rate:6.1%} (n={w.total:>4})" for m, w in windows.items())
            say(f"[event time {time.strftime('%H:%M', time.gmtime(watermark / 1000))}Z] negative rate  {rates}  counted {counted}")
        for alert in alerts[shown:]:
            say(
                f"  >>> ALERT {alert['action'].upper()} [{alert['severity']}] {alert['scope']}: "
                f"{alert['rate']:.1%} vs baseline {alert['baseline']:.1%} over {alert['window_minutes']} min "
                f"(n={alert['volume']}), terms: {', '.join(alert['top_terms']) or 'none stand out'}; model {alert['model']}"
            )
        shown = len(alerts)
        if producer.done():
            producer.result()
            deadline = deadline or time.monotonic() + 60
            if counted >= expected or time.monotonic() > deadline:
                return counted


async def _watch_alerts(settings: Settings, sink: list[dict]) -> None:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(settings.topic_alerts, **kafka_options(settings), auto_offset_reset="earliest")
    await consumer.start()
    try:
        async for record in consumer:
            sink.append(orjson.loads(record.value))
    finally:
        await consumer.stop()


async def _count_topic(settings: Settings, topic: str) -> int:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, **kafka_options(settings), auto_offset_reset="earliest")
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=3000)
        return sum(len(records) for records in batches.values())
    finally:
        await consumer.stop()
