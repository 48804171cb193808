"""The on-call lifecycle on the real thing: a worker process and a console process on
the real broker and Redis, Slack (and the re-notification route) on loopback, and a
replayed burst. A critical incident nobody takes is announced again until someone
acknowledges it; a silence set before a burst keeps every sink quiet while the incident
is still recorded."""
from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from contextlib import contextmanager

import httpx
import orjson
import pytest

from badbuzz import replay as rp
from badbuzz.processes import PROJECT_ROOT, free_port, settings_env, stop_worker
from config.topics import ensure_topics
from tests.conftest import running_worker, wait_for, worker_env_base
from tests.integration.test_alert_delivery import _drain
from tests.loopback import Loopback

pytestmark = pytest.mark.integration

RENOTIFY_MIN = 0.1  # six seconds


def _env(settings, **extra: str) -> dict[str, str]:
    return {k: v for k, v in worker_env_base().items() if not k.startswith("BADBUZZ_")} | settings_env(settings) | extra


def _token(settings) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "badbuzz.cli", "tokens", "create", "bot", "--role", "responder"],
        capture_output=True, text=True, env=_env(settings), cwd=PROJECT_ROOT, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@contextmanager
def running_console(settings, log_path, **extra: str):
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "badbuzz.cli", "console"], env=_env(settings, **extra), cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{settings.console_port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, log_path.read_text()
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.5)
        yield base
    except BaseException:
        print(log_path.read_text()[-4000:])
        raise
    finally:
        stop_worker(proc)


def _burst_settings(isolated):
    # Any opening is critical, so that re-notification applies; the timer runs every second.
    return isolated.model_copy(update={
        "watch_terms": ["delay"], "alert_warning_margin": 0.13, "alert_critical_margin": 0.13, "alert_warning_volume": 30, "alert_critical_volume": 30,
        "alert_eval_interval_s": 1.0, "renotify_min": RENOTIFY_MIN, "console_port": free_port(), "console_cookie_secure": False,
    })


def _burst():
    posts = rp.load_posts("airline", seed=5)
    plan = rp.schedule(posts[:900], [p for p in posts if p.negative], [rp.Burst(30, 400, 8)], per_minute=20)
    return rp.to_messages(plan, end_ms=int(time.time() * 1000), run_id="lifecycle")


def _incident_of(message: dict) -> str:
    return message["attachments"][0]["blocks"][-1]["elements"][0]["text"].split("incident `")[1].split("`")[0]


async def test_a_critical_incident_is_announced_again_until_someone_acknowledges_it(isolated, tmp_path):
    settings = _burst_settings(isolated)
    await ensure_topics(settings, [settings.topic_raw, settings.topic_dlq, settings.topic_alerts, settings.topic_feedback])
    token = _token(settings)
    auth = {"Authorization": f"Bearer {token}"}
    async with Loopback() as slack, Loopback() as second:
        sinks = {"SLACK_WEBHOOK_URL": f"{slack.url}/services/T1/B1/secret", "BADBUZZ_RENOTIFY_SLACK_WEBHOOK_URL": f"{second.url}/services/T1/B2/other-secret"}
        with running_console(settings, tmp_path / "console.log", **sinks) as base, running_worker(settings, tmp_path / "worker.log", **sinks) as worker:
            await rp.produce(_burst(), settings=settings, topic=settings.topic_raw, rate=0)

            async def said(route, incident_id, headline):
                return [m for m in route.json() if _incident_of(m) == incident_id and m["text"] == headline]

            async def opened():
                return [m for m in slack.json() if m["text"] == "Bad buzz [CRITICAL] on all posts"]

            [first] = await wait_for(opened, timeout=120, what="the critical bad-buzz alert on Slack", process=worker)
            incident_id = _incident_of(first)
            again = "Bad buzz still unacknowledged [CRITICAL] on all posts"
            await wait_for(lambda: said(second, incident_id, again), timeout=30, what="the re-notification on the second route", process=worker)
            await wait_for(lambda: said(slack, incident_id, again), timeout=30, what="the re-notification on Slack", process=worker)

            done = httpx.post(f"{base}/api/v1/incidents/{incident_id}/actions", json={"action": "acknowledge", "text": "on it"}, headers=auth)
            assert done.status_code == 200, done.text
            assert done.json()["action"] == "acknowledged"
            await wait_for(lambda: said(slack, incident_id, "Bad buzz acknowledged by token:bot [CRITICAL] on all posts"), timeout=30,
                           what="the acknowledgement on Slack", process=worker)
            renotified = len(await said(slack, incident_id, again))
            # Three re-notification periods, and nothing more is announced for it.
            await asyncio.sleep(RENOTIFY_MIN * 60 * 3 + 2)
            assert len(await said(slack, incident_id, again)) == renotified
            assert len(await said(second, incident_id, again)) == renotified
            again_ack = httpx.post(f"{base}/api/v1/incidents/{incident_id}/actions", json={"action": "acknowledge"}, headers=auth)
            assert again_ack.status_code == 409 and again_ack.json()["error"].startswith(f"incident {incident_id} was acknowledged by token:bot at ")
            detail = httpx.get(f"{base}/api/v1/incidents/{incident_id}", headers=auth).json()
        alerts = [orjson.loads(r.value) for r in await _drain(settings, settings.topic_alerts)]

    mine = [a for a in alerts if a["incident_id"] == incident_id]
    actions = [a["action"] for a in mine]
    assert actions[0] == "opened" and actions.count("acknowledged") == 1 and actions.count("renotified") == renotified >= 1
    assert actions.index("acknowledged") > max(i for i, a in enumerate(actions) if a == "renotified")
    # Each announcement reached Kafka and Slack once; the second route only took the re-notifications.
    assert len({a["alert_id"] for a in alerts}) == len(alerts)
    slack_mine = [m for m in slack.json() if _incident_of(m) == incident_id]
    assert len(slack_mine) == len(mine)
    assert again in {m["text"] for m in second.json()} and all("still unacknowledged" in m["text"] for m in second.json())
    ack = next(a for a in mine if a["action"] == "acknowledged")
    assert (ack["actor"], ack["note"]) == ("token:bot", "on it")
    assert (detail["acknowledged_by"], detail["state"]) == ("token:bot", "open")
    assert [a["action"] for a in detail["alerts"]] == actions
    for log in ("worker.log", "console.log"):
        assert "other-secret" not in (tmp_path / log).read_text()


async def test_a_silence_set_before_a_burst_mutes_every_sink_while_the_incident_is_recorded(isolated, tmp_path):
    settings = _burst_settings(isolated)
    await ensure_topics(settings, [settings.topic_raw, settings.topic_dlq, settings.topic_alerts, settings.topic_feedback])
    auth = {"Authorization": f"Bearer {_token(settings)}"}
    async with Loopback() as slack, Loopback() as second:
        sinks = {"SLACK_WEBHOOK_URL": f"{slack.url}/services/T1/B1/secret", "BADBUZZ_RENOTIFY_SLACK_WEBHOOK_URL": f"{second.url}/services/T1/B2/x"}
        with running_console(settings, tmp_path / "console.log", **sinks) as base:
            made = httpx.post(f"{base}/api/v1/silences", json={"minutes": 60, "reason": "planned load test"}, headers=auth)
            assert made.status_code == 200, made.text
            silence = made.json()
            assert (silence["scope"], silence["signal"], silence["severity"], silence["author"]) == (None, None, None, "token:bot")
            with running_worker(settings, tmp_path / "worker.log", **sinks) as worker:
                await rp.produce(_burst(), settings=settings, topic=settings.topic_raw, rate=0)

                async def recorded():
                    found = httpx.get(f"{base}/api/v1/incidents", params={"scope": "all", "signal": "negative_rate"}, headers=auth).json()["incidents"]
                    return found if found and found[0]["announcements"] >= 2 else None

                # Opened, then re-notified (muted too): the timer's path as well as the batch's.
                [incident] = await wait_for(recorded, timeout=120, what="the incident and its re-notification in the history", process=worker)
                await asyncio.sleep(3)
                detail = httpx.get(f"{base}/api/v1/incidents/{incident['id']}", headers=auth).json()
            listed = httpx.get(f"{base}/api/v1/silences", headers=auth).json()["silences"]
            lifted = httpx.post(f"{base}/api/v1/silences/{silence['id']}/expire", headers=auth)
            assert lifted.status_code == 200
            assert httpx.get(f"{base}/api/v1/silences", headers=auth).json()["silences"] == []
        alerts = await _drain(settings, settings.topic_alerts)

    assert slack.requests == [] and second.requests == [] and alerts == []
    assert [a["action"] for a in detail["alerts"]][:2] == ["opened", "renotified"]
    assert {a["muted_by"] for a in detail["alerts"]} == {silence["id"]}
    assert detail["muted"] == len(detail["alerts"]) and detail["silences"] == [silence]
    assert [s["id"] for s in listed] == [silence["id"]]
