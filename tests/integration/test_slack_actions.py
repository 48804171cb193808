"""Slack's buttons on the real thing: a ``badbuzz console`` process with a signing
secret, the real Redis, a critical incident nobody took, and Slack's response URL on
loopback. Only a fresh request signed with the secret, from a Slack user linked to a
responder, changes anything."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from urllib.parse import urlencode

import httpx
import pytest

from alerting.actions import Renotifier
from alerting.alert import Alert
from alerting.incidents import IncidentHistory, IncidentStore, next_incident
from alerting.outbox import Outbox, OutboxConfig
from alerting.rules import Action, Assessment, Baseline, Decision, Severity, Signal
from badbuzz.processes import PROJECT_ROOT, free_port, settings_env
from config.connections import redis_client
from config.settings import Settings
from console.slack import signature
from tests.conftest import worker_env_base
from tests.integration.test_incident_lifecycle import running_console
from tests.loopback import Loopback

pytestmark = pytest.mark.integration

SECRET = "slack signing secret for the test"
MINUTE = 29_000_000


def _cli(settings: Settings, *args: str, stdin: str = "") -> str:
    env = {k: v for k, v in worker_env_base().items() if not k.startswith("BADBUZZ_")} | settings_env(settings)
    done = subprocess.run([sys.executable, "-m", "badbuzz.cli", *args], input=stdin, capture_output=True, text=True, env=env, cwd=PROJECT_ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _stores(settings: Settings, redis):
    outbox = Outbox(redis, prefix=settings.redis_prefix, sinks=["console", "kafka"], cfg=OutboxConfig.from_settings(settings))
    return IncidentStore(redis, prefix=settings.redis_prefix, ttl_s=settings.counter_ttl_s, outbox=outbox), IncidentHistory(redis, prefix=settings.redis_prefix)


async def _open_critical(settings: Settings) -> str:
    redis = redis_client(settings)
    try:
        store, _ = _stores(settings, redis)
        baseline = Baseline(0.2, 10.0, "trailing", 600)
        decision = Decision(Action.OPEN, Severity.CRITICAL, baseline, Assessment(True, True, Severity.CRITICAL, 1e-9, 1.0))
        incident = next_incident(None, Signal.NEGATIVE_RATE, "all", decision, MINUTE)
        opened = Alert(
            alert_id=incident.alert_id(), incident_id=incident.id, seq=1, signal="negative_rate", action="opened", severity="critical", scope="all",
            window_start="2025-02-19T20:00:00Z", window_end="2025-02-19T20:15:00Z", window_minutes=15, rate=0.62, volume=300, negatives=186, baseline=0.2,
        )
        assert await store.commit(None, incident, opened, now_ms=MINUTE * 60_000)
        return incident.id
    finally:
        await redis.aclose()


async def _state(settings: Settings, *, renotify: bool = False):
    """The incident on all posts, and (when asked) what a re-notification check announces now."""
    redis = redis_client(settings)
    try:
        store, history = _stores(settings, redis)
        incident = await store.get("all", Signal.NEGATIVE_RATE)
        again = await Renotifier(store, history, [(Signal.NEGATIVE_RATE, "all")], every_min=1).check() if renotify else None
        return incident, again
    finally:
        await redis.aclose()


def _click(base: str, response_url: str, slack_user: str, action_id: str, incident_id: str, *, secret: str = SECRET, at: float | None = None):
    payload = {"type": "block_actions", "user": {"id": slack_user, "username": "someone"}, "response_url": response_url,
               "actions": [{"type": "button", "action_id": action_id, "value": incident_id, "block_id": f"badbuzz:{incident_id}.1"}]}
    body = urlencode({"payload": json.dumps(payload)}).encode()
    timestamp = str(int(time.time() if at is None else at))
    headers = {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": signature(secret, timestamp, body),
               "Content-Type": "application/x-www-form-urlencoded"}
    return httpx.post(f"{base}/slack/actions", content=body, headers=headers, timeout=10)


async def test_a_signed_acknowledge_from_a_linked_responder_takes_the_incident_and_nothing_else_does(live_services, model_home, tmp_path):
    # Slack's response URL is served on this test's event loop: the test waits for it with asyncio.sleep.
    kafka, redis_url = live_services
    settings = Settings(home=model_home, mlflow_tracking_uri="", kafka_bootstrap=kafka, redis_url=redis_url, redis_prefix=f"test:{uuid.uuid4().hex[:10]}",
                        console_port=free_port(), console_cookie_secure=False, console_url="https://console.test")
    assert _cli(settings, "users", "add", "rita", "--role", "responder", "--slack-user", "URITA1") == "rita (responder) acts from Slack as URITA1\n"
    _cli(settings, "users", "add", "vic", "--role", "viewer", "--password-stdin", stdin="viewer password 1\n")
    assert _cli(settings, "users", "link", "vic", "--slack-user", "UVIC1") == "vic (viewer) acts from Slack as UVIC1\n"
    incident_id = await _open_critical(settings)
    before, _ = await _state(settings)

    async with Loopback() as slack:
        reply_url = f"{slack.url}/actions/T1/1/reply"
        with running_console(settings, tmp_path / "unsigned.log") as base:
            off = _click(base, reply_url, "URITA1", "badbuzz_acknowledge", incident_id)
        assert off.status_code == 503 and off.json() == {"error": "Slack buttons are off: SLACK_SIGNING_SECRET is not set"}

        with running_console(settings, tmp_path / "console.log", SLACK_SIGNING_SECRET=SECRET) as base:
            forged = _click(base, reply_url, "URITA1", "badbuzz_acknowledge", incident_id, secret="not the secret")
            stale = _click(base, reply_url, "URITA1", "badbuzz_acknowledge", incident_id, at=time.time() - 301)
            ahead = _click(base, reply_url, "URITA1", "badbuzz_acknowledge", incident_id, at=time.time() + 400)
            for refused in (forged, stale, ahead):
                assert refused.status_code == 401 and refused.json() == {"error": "bad or stale Slack signature"}
            stranger = _click(base, reply_url, "UNOBODY9", "badbuzz_acknowledge", incident_id)
            viewer = _click(base, reply_url, "UVIC1", "badbuzz_acknowledge", incident_id)
            assert stranger.status_code == 200 and stranger.json() == {
                "response_type": "ephemeral", "replace_original": False,
                "text": "Your Slack user is not linked to a badbuzz console account: ask an admin to run `badbuzz users link NAME --slack-user UNOBODY9`.",
            }
            assert viewer.json() == {"response_type": "ephemeral", "replace_original": False, "text": "This needs the responder role; vic is a viewer."}
            untouched, again = await _state(settings, renotify=True)
            # Nobody took it: it is still due for re-notification (which the check just announced).
            assert untouched.response == before.response and [a.action for a in again] == ["renotified"]

            started = time.monotonic()
            taken = _click(base, reply_url, "URITA1", "badbuzz_acknowledge", incident_id)
            assert time.monotonic() - started < 3
            twice = _click(base, reply_url, "URITA1", "badbuzz_acknowledge", incident_id)
            deadline = time.monotonic() + 10
            while len(slack.requests) < 4 and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            viewer_token = _cli(settings, "tokens", "create", "t", "--role", "viewer").strip()
            trail = httpx.get(f"{base}/api/v1/incidents/{incident_id}", headers={"Authorization": f"Bearer {viewer_token}"})

    assert taken.status_code == 200, taken.text
    reply = taken.json()
    assert reply["replace_original"] is True and reply["text"] == "Bad buzz acknowledged by rita [CRITICAL] on all posts"
    [attachment] = reply["attachments"]
    assert attachment["blocks"][0]["text"]["text"] == ":rotating_light: Bad buzz still unacknowledged [CRITICAL] on all posts"
    assert attachment["blocks"][-2]["text"]["text"] == ":raising_hand: rita is on it"
    assert all(b["type"] != "actions" for b in attachment["blocks"])
    assert twice.json()["text"].startswith(f"incident {incident_id} was acknowledged by rita at ")
    # Every answer also went to the response URL, the refusals and the update alike.
    assert [r["path"] for r in slack.requests] == ["/actions/T1/1/reply"] * 4
    assert sorted(map(json.dumps, slack.json())) == sorted(json.dumps(r.json()) for r in (stranger, viewer, taken, twice))

    taken_state, after = await _state(settings, renotify=True)
    assert taken_state.response.acknowledged_by == "rita" and taken_state.seq == before.seq + 2
    assert after == []
    assert [a["action"] for a in trail.json()["alerts"]] == ["opened", "renotified", "acknowledged"]
    assert SECRET not in (tmp_path / "console.log").read_text()
