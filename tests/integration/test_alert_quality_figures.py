"""Alert-quality figures from a history recorded the way the rule and responders record
it (``IncidentStore.commit`` on the real Redis): the same numbers from the function, the
report, the console's API and its Prometheus ``/metrics``."""
from __future__ import annotations

import time
import uuid
from dataclasses import replace
from datetime import datetime

import httpx
import pytest

from alerting.incidents import IncidentHistory, IncidentStore, next_incident
from alerting.outbox import Outbox, OutboxConfig
from alerting.quality import read_alert_quality
from alerting.rules import Action, Assessment, Baseline, Decision, Severity, Signal
from badbuzz.processes import free_port
from badbuzz.report import build_report, period_ending
from config.connections import redis_client
from config.settings import Settings
from tests.integration.test_incident_lifecycle import _token, running_console
from tests.integration.test_slack_actions import _cli
from tests.unit.test_alert_quality import DAY, history

pytestmark = pytest.mark.integration

EXPECTED = {
    "incidents": 3, "incidents_per_week": 1.5, "acknowledged": 2,
    "ack_seconds": {"mean": 360.0, "median": 120.0, "p90": 600.0, "max": 600.0},
    "false_alarms": 1,
    "false_alarm_ratio": [
        {"signal": "negative_rate", "scope": "all", "incidents": 2, "false_alarms": 1, "ratio": 0.5},
        {"signal": "volume", "scope": "term:delay", "incidents": 1, "false_alarms": 0, "ratio": 0.0},
    ],
    "silenced_notifications": 3,
}


async def _record(settings: Settings, t0: int) -> None:
    """The unit test's history, each announcement committed at its own time."""
    redis = redis_client(settings)
    try:
        outbox = Outbox(redis, prefix=settings.redis_prefix, sinks=["console"], cfg=OutboxConfig.from_settings(settings))
        store = IncidentStore(redis, prefix=settings.redis_prefix, ttl_s=settings.counter_ttl_s, outbox=outbox)
        decision = Decision(Action.OPEN, Severity.CRITICAL, Baseline(0.2, 10.0), Assessment(True, True, Severity.CRITICAL, 1e-9, 1.0))
        # A new incident on a scope replaces the one before it there.
        latest = {}
        for alerts in history(t0):
            for alert in alerts:
                at_ms = int(datetime.fromisoformat(alert.created_at.replace("Z", "+00:00")).timestamp() * 1000)
                key, current = (alert.signal, alert.scope), latest.get((alert.signal, alert.scope))
                if alert.action == "opened":
                    new = next_incident(None, Signal(alert.signal), alert.scope, decision, at_ms // 60_000)
                else:
                    new = replace(current, seq=current.seq + 1)
                assert await store.commit(current, new, replace(alert, alert_id=new.alert_id(), incident_id=new.id), now_ms=at_ms)
                latest[key] = new
    finally:
        await redis.aclose()


async def test_the_figures_match_the_recorded_actions_everywhere_they_are_shown(live_services, model_home, tmp_path):
    kafka, redis_url = live_services
    settings = Settings(home=model_home, mlflow_tracking_uri="", kafka_bootstrap=kafka, redis_url=redis_url, redis_prefix=f"test:{uuid.uuid4().hex[:10]}",
                        console_port=free_port(), console_cookie_secure=False, counter_ttl_s=14 * 24 * 3600)
    now_ms = int(time.time()) * 1000
    # The unit test's period, shifted to end now (five minutes' slack for the console, whose period ends a moment later).
    await _record(settings, now_ms - 14 * DAY + 300_000)

    redis = redis_client(settings)
    try:
        figures = await read_alert_quality(IncidentHistory(redis, prefix=settings.redis_prefix), since_ms=now_ms - 14 * DAY, until_ms=now_ms)
        report = await build_report(settings, period_ending(now_ms, 14 * 24 * 3600), redis=redis)
    finally:
        await redis.aclose()
    assert figures.to_dict() == EXPECTED
    assert report["alert_quality"] == EXPECTED

    auth = {"Authorization": f"Bearer {_token(settings)}"}
    _cli(settings, "users", "add", "vic", "--role", "viewer", "--password-stdin", stdin="viewer password 1\n")
    with running_console(settings, tmp_path / "console.log") as base:
        api = httpx.get(f"{base}/api/v1/quality", headers=auth).json()
        metrics = httpx.get(f"{base}/metrics").text.splitlines()
        with httpx.Client(base_url=base) as browser:
            csrf = browser.get("/login").text.split('name="csrf" value="')[1].split('"')[0]
            assert browser.post("/login", data={"name": "vic", "password": "viewer password 1", "csrf": csrf, "next": "/quality"}).status_code == 303
            page = browser.get("/quality").text
    assert {k: v for k, v in api.items() if k not in ("since", "until", "incidents_per_week")} == {
        k: v for k, v in EXPECTED.items() if k != "incidents_per_week"
    }
    # The console's period ends at its own now, a moment after the test's.
    assert api["incidents_per_week"] == pytest.approx(1.5, abs=0.001)
    assert "<tr><th>Incidents</th><td>3 (1.5 a week)</td></tr>" in page
    assert "median 120 s, 90th percentile 600 s, longest 600 s" in page
    assert "<tr><td>negative_rate</td><td>all</td><td>2</td><td>1</td><td>50.0%</td></tr>" in page
    assert "<tr><th>Silenced notifications</th><td>3</td></tr>" in page
    for line in ("badbuzz_incident_ack_seconds_count 2.0", "badbuzz_incident_ack_seconds_sum 720.0", "badbuzz_incidents 3.0",
                 'badbuzz_false_alarm_ratio{scope="all",signal="negative_rate"} 0.5', "badbuzz_silenced_notifications 3.0"):
        assert line in metrics, line
