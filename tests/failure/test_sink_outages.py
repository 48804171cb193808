"""Failure suite: Slack and Application Insights failing (500s, then requests that hang
past the timeout) and recovering. Every alert reaches each sink exactly once, by alert
id, in order within its incident, whichever attempts failed before.

Both servers are real HTTP servers on loopback receiving the real payloads; the outbox
lives in the real Redis."""
from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import redis.asyncio as aioredis

from alerting.alert import Alert
from alerting.appinsights import AppInsightsSink
from alerting.delivery import Delivery
from alerting.outbox import Outbox, OutboxConfig
from alerting.slack import SlackWebhookSink
from benchmarks.keys import delete_prefix
from tests.loopback import NO_ANSWER, Loopback

pytestmark = [pytest.mark.failure, pytest.mark.integration]

IKEY = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
FAST = OutboxConfig(retention_s=600, backoff_s=0.05, backoff_max_s=0.2, lease_s=10)
CLIENT_TIMEOUT_S = 1
HANG_S = 2.5


def alert(incident: str, seq: int, action: str, severity: str) -> Alert:
    return Alert(
        alert_id=f"{incident}.{seq}", incident_id=incident, seq=seq, signal="negative_rate", action=action, severity=severity,
        scope="all", window_start="2026-01-01T11:46:00Z", window_end="2026-01-01T12:01:00Z", window_minutes=15,
        short_window_minutes=5, rate=0.8, short_rate=0.85, baseline=0.6, baseline_source="trailing", volume=600, negatives=480,
        expected_volume=590.0, volume_ratio=1.02, p_value=1e-12, drivers=[], example_post_ids=[], model="m v1 (tfidf)",
        model_version="1", link="",
    )


def failing_then_hanging(failures: int, hangs: int, ok):
    """``failures`` answers of 500, then ``hangs`` requests held past the client timeout, then ``ok``."""
    def respond(n: int):
        if n < failures:
            return 500, "internal error"
        if n < failures + hangs:
            return NO_ANSWER, HANG_S
        return ok
    return respond


async def test_alerts_reach_slack_and_app_insights_once_each_through_errors_and_timeouts(live_services):
    redis = aioredis.Redis.from_url(live_services[1])
    prefix = f"test:sinks:{uuid.uuid4().hex[:10]}"
    incident_a, incident_b = "rate-all-20260101T1200-aaaa0001", "rate-term:bags-20260101T1201-bbbb0002"
    alerts = [
        alert(incident_a, 1, "opened", "warning"),
        alert(incident_b, 1, "opened", "watch"),
        alert(incident_a, 2, "escalated", "critical"),
    ]
    slack_ok = (200, "ok")
    ai_ok = (200, {"itemsReceived": 4, "itemsAccepted": 4, "errors": []})
    async with (
        Loopback(failing_then_hanging(3, 2, slack_ok)) as slack,
        Loopback(failing_then_hanging(2, 2, ai_ok), late=ai_ok) as ingestion,
    ):
        sinks = [
            SlackWebhookSink(f"{slack.url}/hook", timeout_s=CLIENT_TIMEOUT_S),
            AppInsightsSink(f"InstrumentationKey={IKEY};IngestionEndpoint={ingestion.url}/", timeout_s=CLIENT_TIMEOUT_S),
        ]
        outbox = Outbox(redis, prefix=prefix, sinks=[s.name for s in sinks], cfg=FAST)
        for a in alerts:
            assert await outbox.enqueue(a, now_ms=int(time.time() * 1000))
        delivery = asyncio.create_task(Delivery(outbox, sinks, poll_s=0.05, send_timeout_s=5).run())
        try:
            deadline = time.monotonic() + 60
            while len(slack.json()) < 3 or len(ingestion.json()) < 3:
                assert time.monotonic() < deadline, f"slack got {len(slack.json())}, app insights {len(ingestion.json())} of 3"
                await asyncio.sleep(0.1)
            # Room for a duplicate to show up, if there were one. A client that waited out a
            # hang would have taken its late success as delivered, and the alert would be
            # missing from the answered requests above.
            await asyncio.sleep(HANG_S)
        finally:
            delivery.cancel()
            await asyncio.gather(delivery, return_exceptions=True)
        try:
            statuses = {name: [r["status"] for r in server.requests] for name, server in (("slack", slack), ("ai", ingestion))}
            assert statuses == {"slack": [500, 500, 500, NO_ANSWER, NO_ANSWER, 200, 200, 200], "ai": [500, 500, NO_ANSWER, NO_ANSWER, 200, 200, 200]}
            # Slack: each alert id once, the escalation after the opening of its incident.
            slack_ids = [body["attachments"][0]["blocks"][-1]["elements"][0]["text"].split("alert `")[1].split("`")[0] for body in slack.json()]
            assert sorted(slack_ids) == sorted(a.alert_id for a in alerts)
            assert slack_ids.index(f"{incident_a}.1") < slack_ids.index(f"{incident_a}.2")
            # Application Insights: one accepted post per alert, its event naming the alert.
            ai_ids = [next(e for e in post if e["name"].endswith(".Event"))["data"]["baseData"]["properties"]["alert_id"] for post in ingestion.json()]
            assert sorted(ai_ids) == sorted(a.alert_id for a in alerts)
            assert ai_ids.index(f"{incident_a}.1") < ai_ids.index(f"{incident_a}.2")
            for sink in sinks:
                assert await outbox.pending(sink.name) == 0
                assert all([await outbox.is_delivered(sink.name, a.alert_id) for a in alerts])
        finally:
            await delete_prefix(redis, prefix)
            await redis.aclose()
