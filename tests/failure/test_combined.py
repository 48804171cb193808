"""Every fault in one run: while a replayed day with a bad-buzz burst flows, the worker is
SIGKILLed, Redis is SIGKILLed, refuses writes (out of memory), is paused, the broker is
SIGKILLed, and feedback arrives for hostile post ids. Afterwards every minute holds exactly
the posts sent, and each alert reached each sink (the ``alerts`` topic and a Slack webhook
on loopback) exactly once.

Redis runs with ``appendfsync always`` here: with the default (every second) a Redis crash
may lose its last second of writes after their offsets were committed (docs/guarantees.md)."""
from __future__ import annotations

import asyncio
import os
import re
import signal
import time

import orjson
import redis.asyncio as aioredis

from alerting.feedback import make_feedback
from badbuzz import replay as rp
from badbuzz import services
from badbuzz.services import kafka as kafka_svc
from badbuzz.services import manager
from badbuzz.services import redis as redis_svc
from config.topics import ensure_topics
from tests.conftest import running_worker, wait_for
from tests.failure.test_failures import accept_writes, counted, drain, minute_counts, produce, refuse_writes
from tests.loopback import Loopback

MINUTE = 60_000
HOSTILE_IDS = ["wrong", "post:wrong", "*", "{x}", "a\nb", "`code`", "<!channel>"]


def kill(settings, svc) -> None:
    pid = manager.live_pid(settings, svc)
    assert pid, f"{svc.__name__} is not running"
    os.kill(pid, signal.SIGKILL)
    while manager.live_pid(settings, svc):
        time.sleep(0.05)


async def redis_command(settings, *args) -> None:
    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        await client.execute_command(*args)
    finally:
        await client.aclose()


def slack_alert_ids(slack: Loopback) -> list[str]:
    ids = []
    for body in slack.json():
        footer = body["attachments"][0]["blocks"][-1]["elements"][0]["text"]
        ids.append(re.search(r"alert `([^`]+)`", footer).group(1))
    return ids


async def test_every_fault_in_one_run_counts_exactly_and_announces_once_per_sink(private, scenario, tmp_path):
    settings = scenario.model_copy(update={"watch_terms": ["delay"], "topic_feedback": f"{scenario.topic_raw}.feedback"})
    posts = rp.load_posts("airline", seed=5)
    calm, negatives = posts[:1200], [p for p in posts if p.negative]
    plan = rp.schedule(calm, negatives, [rp.Burst(at_min=45, count=600, duration_min=10, term="delay")], per_minute=20)
    messages = rp.to_messages(plan, end_ms=int(time.time() * 1000), run_id="combined")
    records = [(key, value) for key, value, _ in messages]
    phases = [records[i : i + len(records) // 6] for i in range(0, len(records), len(records) // 6)]
    await ensure_topics(settings, [settings.topic_raw, settings.topic_dlq, settings.topic_alerts, settings.topic_feedback])
    await redis_command(private, "CONFIG", "SET", "appendfsync", "always")

    async with Loopback() as slack:
        env = {"SLACK_WEBHOOK_URL": f"{slack.url}/hook"}
        await produce(settings, phases[0])
        with running_worker(settings, tmp_path / "worker-1.log", **env) as worker:
            await wait_for(lambda: _above(settings, 100), timeout=90, what="counting to start", process=worker)
            worker.send_signal(signal.SIGKILL)
            worker.wait()
        with running_worker(settings, tmp_path / "worker-2.log", **env) as worker:
            await produce(settings, phases[1])
            await wait_for(lambda: _above(settings, len(phases[0]) + 50), timeout=90, what="the restarted worker to count", process=worker)

            kill(private, redis_svc)
            await produce(settings, phases[2])
            await asyncio.sleep(3)
            services.up(private, echo=lambda _: None)
            await redis_command(private, "CONFIG", "SET", "appendfsync", "always")

            await refuse_writes(private)
            await produce(settings, phases[3])
            await asyncio.sleep(4)
            await accept_writes(private)

            await redis_command(private, "CLIENT", "PAUSE", "3000", "WRITE")
            await produce(settings, phases[4])

            kill(private, kafka_svc)
            await asyncio.sleep(3)
            services.up(private, echo=lambda _: None)
            now = int(time.time() * 1000)
            feedback = [(i.encode(), make_feedback(i, "positive", now_ms=now).to_json()) for i in HOSTILE_IDS]
            await produce(settings, feedback, topic=settings.topic_feedback)
            for phase in phases[5:]:
                await produce(settings, phase)

            async def all_counted():
                return await counted(settings) == len(records)

            await wait_for(all_counted, timeout=240, what=f"all {len(records)} posts counted", process=worker)
            alerts: list[dict] = []

            async def slack_caught_up():
                alerts[:] = [orjson.loads(r.value) for r in await drain(settings, settings.topic_alerts, expect=1, timeout=10)]
                return alerts and len(slack.json()) >= len(alerts)

            await wait_for(slack_caught_up, timeout=90, what="Slack to receive every alert", process=worker)
            await asyncio.sleep(3)  # room for a duplicate delivery to show up
            alerts[:] = [orjson.loads(r.value) for r in await drain(settings, settings.topic_alerts, expect=len(alerts), timeout=10)]
            assert worker.poll() is None, "the worker died"

    counts, sent = await minute_counts(settings, records)
    assert counts == sent
    assert await counted(settings) == len(records)
    kafka_ids = [a["alert_id"] for a in alerts]
    assert any(a["action"] == "opened" and a["signal"] == "negative_rate" for a in alerts), alerts
    assert len(kafka_ids) == len(set(kafka_ids)), "an alert reached the alerts topic twice"
    assert sorted(slack_alert_ids(slack)) == sorted(kafka_ids), "Slack did not get each alert exactly once"


async def _above(settings, n: int) -> bool:
    return await counted(settings) > n
