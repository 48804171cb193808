"""Recovery times on private Kafka and Redis: how long counting stops after a worker is
SIGKILLed and restarted (with and without static group membership), after the broker is
SIGKILLed and restarted, and after Redis is SIGKILLed and restarted — while posts keep
arriving — and whether every post was then counted exactly once."""
from __future__ import annotations

import asyncio
import os
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer

from badbuzz import services
from badbuzz.processes import free_port, start_worker, stop_worker
from badbuzz.services import kafka as kafka_svc
from badbuzz.services import manager
from badbuzz.services import redis as redis_svc
from config.connections import kafka_options
from config.settings import Settings
from config.topics import ensure_topics
from counting.counters import Counters
from counting.windows import minute_of

Say = Callable[[str], None]
RATE = 100  # posts per second while a fault happens
DOWN_S = 3.0  # how long a killed service stays down


class Feed:
    """Posts at a steady rate with unique ids and the current event time; a batch the
    broker refuses is sent again (same ids), so every post reaches the topic."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.sent = 0
        self._stopping = False
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        producer = AIOKafkaProducer(**kafka_options(self.settings), acks="all", enable_idempotence=True, request_timeout_ms=60_000)
        await producer.start()
        try:
            while not self._stopping:
                batch = []
                for i in range(self.sent, self.sent + RATE // 10):
                    body = {"id": f"r-{i}", "text": f"flight {i} delayed again, awful", "created_at": int(time.time() * 1000)}
                    batch.append((body["id"].encode(), orjson.dumps(body)))
                while True:
                    try:
                        futures = [await producer.send(self.settings.topic_raw, key=k, value=v) for k, v in batch]
                        await asyncio.gather(*futures)
                        break
                    except Exception:  # broker down: the same posts again once it is back
                        await asyncio.sleep(0.5)
                self.sent += len(batch)
                await asyncio.sleep(0.1)
        finally:
            await producer.stop()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Finish the batch in flight (a cancelled batch could reach the topic uncounted here)."""
        self._stopping = True
        if self._task is not None:
            await self._task


async def _counted(settings: Settings) -> int:
    client = aioredis.Redis.from_url(settings.redis_url, socket_timeout=1)
    try:
        end = minute_of(int(time.time() * 1000)) + 5
        return (await Counters(client, prefix=settings.redis_prefix, ttl_s=1).window("all", end, 120)).total
    except (OSError, aioredis.RedisError):
        return -1
    finally:
        await client.aclose()


async def _until(predicate, timeout_s: float, what: str, settings: Settings) -> float:
    start = time.monotonic()
    while not await predicate():
        if time.monotonic() - start > timeout_s:
            raise TimeoutError(f"recovery bench: no {what} within {timeout_s:.0f}s ({await _counted(settings)} posts counted)")
        await asyncio.sleep(0.1)
    return time.monotonic() - start


def _kill(settings: Settings, svc) -> None:
    pid = manager.live_pid(settings, svc)
    if not pid:
        raise RuntimeError(f"recovery bench: {svc.__name__} is not running")
    os.kill(pid, signal.SIGKILL)
    while manager.live_pid(settings, svc):
        time.sleep(0.05)


async def _scenario(name: str, short: str, base: Settings, model_home: Path, log_dir: Path, fault: str, *, static: bool) -> dict:
    tag = f"{short}-{int(time.time() * 1000) % 10_000_000}"
    settings = base.model_copy(
        update=dict(
            home=model_home,
            topic_raw=f"rec-{tag}.raw",
            topic_dlq=f"rec-{tag}.dlq",
            topic_alerts=f"rec-{tag}.alerts",
            topic_feedback=f"rec-{tag}.feedback",
            redis_prefix=f"rec:{tag}",
            app_id=f"badbuzz-rec-{tag}",
            web_port=free_port(),
            group_instance_id=f"rec-{tag}-0" if static else "",
        )
    )
    await ensure_topics(settings, settings.topics)
    worker = start_worker(settings, log_dir / f"{tag}.log")
    feed = Feed(settings)
    try:
        feed.start()
        await _until(lambda: _counting_since(settings, 1), 120, "counting at start", settings)
        await asyncio.sleep(3)
        before = await _counted(settings)
        started = time.monotonic()
        if fault == "worker":
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            worker = start_worker(settings, log_dir / f"{tag}.restart.log")
        else:
            svc = kafka_svc if fault == "broker" else redis_svc
            _kill(base, svc)
            await asyncio.sleep(DOWN_S)
            services.up(base, echo=lambda _: None)
        await _until(lambda: _counting_since(settings, before + 1), 180, f"counting after the {fault} fault", settings)
        resumed_s = time.monotonic() - started
        await feed.stop()
        await _until(lambda: _exactly(settings, feed.sent), 180, f"catching up to {feed.sent} posts", settings)
        caught_up_s = time.monotonic() - started
    finally:
        await feed.stop()
        stop_worker(worker)
    total = await _counted(settings)
    return {
        "fault": name,
        "service down (s)": 0.0 if fault == "worker" else DOWN_S,
        "counting again after (s)": round(resumed_s, 1),
        "all caught up after (s)": round(caught_up_s, 1),
        "posts sent": feed.sent,
        "posts counted": total,
        "exact": total == feed.sent,
    }


async def _counting_since(settings: Settings, level: int) -> bool:
    return await _counted(settings) >= level


async def _exactly(settings: Settings, n: int) -> bool:
    return await _counted(settings) == n


SCENARIOS = (
    ("worker SIGKILL + restart, dynamic membership", "worker", False),
    ("worker SIGKILL + restart, static membership", "worker", True),
    ("broker SIGKILL + restart", "broker", True),
    ("Redis SIGKILL + restart", "redis", True),
)


async def measure_recovery(settings: Settings, say: Say, *, log_dir: Path, only: tuple[str, ...] = ()) -> list[dict]:
    """One row per fault; private services on free ports, stopped afterwards. Worker logs
    stay in ``log_dir``."""
    with tempfile.TemporaryDirectory(prefix="badbuzz-recovery-") as tmp:
        home = Path(tmp)
        kafka_port, controller_port, redis_port = free_port(), free_port(), free_port()
        os.environ.setdefault(kafka_svc.LIBS_ENV, str(kafka_svc.default_libs_dir(settings)))
        base = settings.model_copy(
            update=dict(
                home=home,
                kafka_port=kafka_port,
                kafka_controller_port=controller_port,
                redis_port=redis_port,
                kafka_bootstrap=f"127.0.0.1:{kafka_port}",
                redis_url=f"redis://127.0.0.1:{redis_port}/0",
            )
        )
        services.up(base, echo=lambda _: None)
        rows = []
        try:
            for name, fault, static in SCENARIOS:
                if only and fault not in only:
                    continue
                say(f"recovery: {name} ...")
                rows.append(await _scenario(name, f"{fault}{'-s' if static else ''}", base, settings.home, log_dir, fault, static=static))
                say(f"  {rows[-1]}")
        finally:
            services.down(base)
        return rows
