"""Sensitivity presets set through a real console (admin only, audited) and followed by
the workers' per-scope rule settings through the version key on the real Redis."""
from __future__ import annotations

import uuid

import httpx
import pytest

from alerting.presets import Presets, ScopeConfigs, preset_config
from alerting.rules import RuleConfig
from badbuzz.processes import free_port
from config.connections import redis_client
from config.settings import Settings
from console.app import accounts_for
from tests.integration.test_incident_lifecycle import running_console
from tests.integration.test_slack_actions import _cli

pytestmark = pytest.mark.integration


async def test_an_admin_changes_a_scopes_preset_and_the_rule_follows_at_the_next_refresh(live_services, model_home, tmp_path):
    kafka, redis_url = live_services
    settings = Settings(home=model_home, mlflow_tracking_uri="", kafka_bootstrap=kafka, redis_url=redis_url, redis_prefix=f"test:{uuid.uuid4().hex[:10]}",
                        console_port=free_port(), console_cookie_secure=False, watch_terms=["delay"])
    admin = {"Authorization": "Bearer " + _cli(settings, "tokens", "create", "ops", "--role", "admin").strip()}
    responder = {"Authorization": "Bearer " + _cli(settings, "tokens", "create", "bot", "--role", "responder").strip()}
    _cli(settings, "users", "add", "ada", "--role", "admin", "--password-stdin", stdin="admin password 1\n")
    base_cfg = RuleConfig.from_settings(settings)
    redis = redis_client(settings)
    try:
        configs = ScopeConfigs(base_cfg, Presets(redis, prefix=settings.redis_prefix))
        assert await configs.refresh() and configs("term:delay") is base_cfg
        with running_console(settings, tmp_path / "console.log") as base:
            refused = httpx.put(f"{base}/api/v1/presets/term:delay", json={"preset": "strict"}, headers=responder)
            unknown = httpx.put(f"{base}/api/v1/presets/term:nothing", json={"preset": "strict"}, headers=admin)
            bad = httpx.put(f"{base}/api/v1/presets/term:delay", json={"preset": "loud"}, headers=admin)
            assert not await configs.refresh()
            done = httpx.put(f"{base}/api/v1/presets/term:delay", json={"preset": "strict"}, headers=admin)
            listed = httpx.get(f"{base}/api/v1/presets", headers=responder).json()
            assert await configs.refresh() and not await configs.refresh()
            strict_cfg, all_cfg = configs("term:delay"), configs("all")
            back = httpx.put(f"{base}/api/v1/presets/term:delay", json={"preset": "balanced"}, headers=admin)
            assert await configs.refresh()
            with httpx.Client(base_url=base) as browser:
                csrf = browser.get("/login").text.split('name="csrf" value="')[1].split('"')[0]
                assert browser.post("/login", data={"name": "ada", "password": "admin password 1", "csrf": csrf, "next": "/admin/presets"}).status_code == 303
                page = browser.get("/admin/presets").text
                session_csrf = page.split('name="csrf" value="')[1].split('"')[0]
                set_page = browser.post("/admin/presets", data={"csrf": session_csrf, "scope": "all", "preset": "sensitive"})
            assert await configs.refresh() and configs("all") == preset_config(base_cfg, "sensitive")
        trail = await accounts_for(settings, redis).audit_trail()
    finally:
        await redis.aclose()

    assert refused.status_code == 403 and refused.json() == {"error": "this needs the admin role; token:bot is a responder"}
    assert unknown.status_code == 404 and unknown.json() == {"error": "no scope 'term:nothing': one of all, term:delay"}
    assert bad.status_code == 422 and bad.json() == {"error": "preset must be one of sensitive, balanced, strict, got 'loud'"}
    assert done.json() == {"scope": "term:delay", "preset": "strict", "version": 1}
    assert listed["version"] == 1 and listed["scopes"] == {"all": "balanced", "term:delay": "strict"}
    assert listed["presets"]["balanced"] == {"margin": 0.13, "warning_margin": 0.2, "critical_margin": 0.3, "p_value": 0.0002}
    assert strict_cfg == preset_config(base_cfg, "strict") and all_cfg is base_cfg
    assert back.json()["version"] == 2 and configs("term:delay") is base_cfg
    assert "<tr><td>strict</td><td>19.5%</td><td>30.0%</td><td>45.0%</td><td>2e-05</td></tr>" in page
    assert set_page.status_code == 200 and "all is sensitive (version 3); workers follow within a minute." in set_page.text
    assert [(e["who"], e["what"], e["detail"]) for e in trail if e["what"] == "preset changed"] == [
        ("ada", "preset changed", "all: sensitive (version 3)"),
        ("token:ops", "preset changed", "term:delay: balanced (version 2)"),
        ("token:ops", "preset changed", "term:delay: strict (version 1)"),
    ]


SEVERITY_RANK = {"watch": 0, "warning": 1, "critical": 2}


async def _burst_alerts(settings: Settings, tmp_path, *, preset: str | None) -> list[dict]:
    """Replays the same day with a burst into a running worker; when ``preset`` is given it
    is set only after the worker has started, and the worker's log must show it was taken."""
    import time

    import orjson

    from badbuzz import replay as rp
    from config.topics import ensure_topics
    from counting.counters import Counters
    from counting.windows import minute_of
    from tests.conftest import running_worker, wait_for
    from tests.integration.test_end_to_end import drain

    posts = rp.load_posts("airline", seed=11)
    calm, negatives = posts[:1200], [p for p in posts if p.negative]
    plan = rp.schedule(calm, negatives, [rp.Burst(at_min=45, count=600, duration_min=10, term="delay")], per_minute=20)
    end_ms = int(time.time() * 1000)
    messages = rp.to_messages(plan, end_ms=end_ms, run_id="preset")
    first, last = minute_of(end_ms - plan[-1].offset_ms), minute_of(end_ms)
    await ensure_topics(settings, [settings.topic_raw, settings.topic_dlq, settings.topic_alerts])
    redis = redis_client(settings)
    counters = Counters(redis, prefix=settings.redis_prefix, ttl_s=settings.counter_ttl_s)
    log_path = tmp_path / f"worker-{preset or 'balanced'}.log"
    try:
        with running_worker(settings, log_path) as worker:
            async def started():
                return "Worker: Ready" in log_path.read_text() or "[^Worker]: Ready" in log_path.read_text()

            await wait_for(started, timeout=120, what="the worker to start", process=worker)
            if preset is not None:
                await Presets(redis, prefix=settings.redis_prefix).set("all", preset)

                async def taken():
                    return f"sensitivity presets: all={preset}" in log_path.read_text()

                await wait_for(taken, timeout=30, what=f"the running worker to take the {preset} preset", process=worker)
            await rp.produce(messages, settings=settings, topic=settings.topic_raw, rate=0)

            async def counted():
                return (await counters.window("all", last, last - first + 1)).total == len(messages)

            await wait_for(counted, timeout=120, what="every post counted", process=worker)
            return [orjson.loads(r.value) for r in await drain(settings, settings.topic_alerts)]
    finally:
        await redis.aclose()


async def test_a_preset_set_on_a_running_worker_changes_what_alerts(isolated, tmp_path):
    """The same burst, replayed into a worker left balanced and into one put on strict after
    it started: the strict worker takes the change without a restart and pages less."""
    fast = {"alert_eval_interval_s": 2.0, "watch_terms": []}
    balanced = await _burst_alerts(isolated.model_copy(update=fast), tmp_path, preset=None)
    tag = uuid.uuid4().hex[:10]
    strict_settings = isolated.model_copy(update={
        **fast, "topic_raw": f"s-{tag}.raw", "topic_dlq": f"s-{tag}.dlq", "topic_alerts": f"s-{tag}.alerts",
        "topic_feedback": f"s-{tag}.feedback", "redis_prefix": f"test:{tag}", "app_id": f"badbuzz-test-{tag}", "web_port": free_port(),
    })
    strict = await _burst_alerts(strict_settings, tmp_path, preset="strict")

    def highest(alerts: list[dict]) -> int:
        ranks = [SEVERITY_RANK[a["severity"]] for a in alerts if a["signal"] == "negative_rate" and a["action"] in ("opened", "escalated", "reopened")]
        return max(ranks, default=-1)

    assert highest(balanced) >= 0, balanced
    assert highest(strict) < highest(balanced), (strict, balanced)
