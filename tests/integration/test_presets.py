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
