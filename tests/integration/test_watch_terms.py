"""Watch terms edited in a real console (admins only, audited) and followed by a running
worker; and the shared /metrics figures, computed once and read with one command."""
from __future__ import annotations

import time
import uuid

import httpx
import orjson
import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection

from alerting.runtime import AlertingRuntime
from alerting.watch_terms import FollowedTerms, TermsChanged, WatchTerms
from badbuzz import replay as rp
from badbuzz.processes import free_port
from config.connections import redis_client, shared_keyspace
from config.settings import Settings
from config.topics import ensure_topics
from console.app import accounts_for
from counting.counters import Counters, ScoredPost
from counting.windows import minute_of
from models.scorer import ModelInfo
from stream.web import SharedMetrics, SharedReader
from tests.conftest import running_worker, wait_for
from tests.integration.test_console import CHROMIUM, _run
from tests.integration.test_incident_lifecycle import running_console
from tests.integration.test_slack_actions import _cli

pytestmark = pytest.mark.integration

PASSWORDS = {"ada": "admin password 1", "vic": "viewer password 1"}
MODEL = ModelInfo("tfidf", "negative_vs_rest", 0.5, "m", "1", "models:/m/1")


async def _forget(settings: Settings) -> None:
    redis = aioredis.Redis.from_url(settings.redis_url)
    try:
        keys = [k async for k in redis.scan_iter(match=f"{shared_keyspace(settings.redis_prefix)}:*", count=1000)]
        if keys:
            await redis.unlink(*keys)
    finally:
        await redis.aclose()


async def test_the_store_starts_from_the_settings_and_refuses_a_stale_write(live_services):
    prefix = f"test:{uuid.uuid4().hex[:10]}"
    redis = aioredis.Redis.from_url(live_services[1])
    store = WatchTerms(redis, prefix=prefix, default=["Delay", "lost  luggage"])
    followed = FollowedTerms(store)
    try:
        assert await store.current() == (0, ["delay", "lost luggage"])
        assert not await followed.refresh() and followed.scopes == ["all", "term:delay", "term:lost luggage"]
        assert await store.add("Strike ") == (1, "strike")
        assert await followed.refresh() and followed.scopes == ["all", "term:delay", "term:lost luggage", "term:strike"]
        assert not await followed.refresh()
        assert await store.remove("DELAY") == (2, "delay")
        with pytest.raises(TermsChanged):
            await store.replace(["refund"], expected=1)
        assert await store.replace([], expected=2) == 3
        assert await followed.refresh() and followed.scopes == ["all"] and followed.version == 3
        assert await store.current() == (3, [])
    finally:
        await redis.unlink(store.key, store.version_key)
        await redis.aclose()


class CountingConnection(Connection):
    """Counts every command sent, alone or in a pipeline."""

    sent = 0

    def pack_command(self, *args):
        CountingConnection.sent += 1
        return super().pack_command(*args)

    def pack_commands(self, commands):
        commands = list(commands)
        CountingConnection.sent += len(commands)
        return super().pack_commands(commands)


@pytest.mark.parametrize("terms", [3, 40])
async def test_a_scrape_reads_one_key_whatever_the_scopes_and_shows_the_windows_truth(live_services, terms):
    settings = Settings(redis_url=live_services[1], redis_prefix=f"test:{uuid.uuid4().hex[:10]}", watch_terms=[f"w{i}" for i in range(terms)])
    runtime = AlertingRuntime(settings, None, lambda: MODEL)
    runtime.__dict__["redis"] = aioredis.Redis.from_url(settings.redis_url, connection_class=CountingConnection)
    counters = Counters(runtime.redis, prefix=settings.redis_prefix, ttl_s=settings.counter_ttl_s)
    now_ms = int(time.time() * 1000)
    posts = [ScoredPost(f"p{i}", now_ms - (i % 20) * 60_000, 0.9 if i % 3 == 0 else 0.1, i % 3 == 0, ["all", f"term:w{i % terms}"], ()) for i in range(60)]
    try:
        await counters.count_new(posts, model_version="1")
        shared = SharedMetrics(SharedReader(runtime), prefix=settings.redis_prefix)
        assert await shared.refresh()
        assert not await shared.refresh(), "a second worker in the same period computes nothing"
        before = CountingConnection.sent
        state = await shared.read({("tweets.raw", 0): 3})
        assert CountingConnection.sent - before == 1
        end = minute_of(await counters.watermark_ms())
        for scope in ["all", *(f"term:w{i}" for i in range(terms))]:
            for minutes in (15, 60):
                truth = await counters.window(scope, end, minutes)
                assert state.windows[(scope, minutes)] == (truth.total, truth.negative), (scope, minutes)
        assert state.windows[("all", 60)] == (60, 20) and state.lag == {("tweets.raw", 0): 3} and state.age_s < 5
    finally:
        await runtime.redis.aclose()
        await _forget(settings)


async def test_a_term_added_in_the_console_is_counted_by_the_running_worker_from_its_next_batch(isolated, tmp_path):
    settings = isolated.model_copy(update={"watch_terms": ["delay"], "console_port": free_port(), "console_cookie_secure": False})
    admin = {"Authorization": "Bearer " + _cli(settings, "tokens", "create", "ops", "--role", "admin").strip()}
    await ensure_topics(settings, [settings.topic_raw, settings.topic_dlq, settings.topic_alerts])
    redis = redis_client(settings)
    counters = Counters(redis, prefix=settings.redis_prefix, ttl_s=settings.counter_ttl_s)
    log_path = tmp_path / "worker.log"

    def posts(run: str, texts: list[str]) -> list[tuple[bytes, bytes, bool]]:
        now_ms = int(time.time() * 1000)
        return [(f"{run}-{i}".encode(), orjson.dumps({"id": f"{run}-{i}", "text": t, "created_at": now_ms}), False) for i, t in enumerate(texts)]

    async def total(scope: str) -> int:
        return (await counters.window(scope, minute_of(int(time.time() * 1000)) + 1, 30)).total

    async def send_and_wait(messages, expected_all: int) -> None:
        await rp.produce(messages, settings=settings, topic=settings.topic_raw, rate=0)

        async def counted():
            return await total("all") == expected_all

        await wait_for(counted, timeout=120, what=f"{expected_all} posts counted", process=worker)

    try:
        with running_worker(settings, log_path) as worker, running_console(settings, tmp_path / "console.log") as base:
            await wait_for(lambda: _async("Ready" in log_path.read_text()), timeout=120, what="the worker to start", process=worker)
            await send_and_wait(posts("a", ["cabin crew strike again"] * 6 + ["flight delay again"] * 2), 8)
            added = httpx.post(f"{base}/api/v1/watch-terms", json={"term": "Strike"}, headers=admin)
            await wait_for(lambda: _async("watch terms (version 1): delay, strike" in log_path.read_text()), timeout=30,
                           what="the running worker to take the new term", process=worker)
            await send_and_wait(posts("b", ["strike at the airport"] * 7 + ["a lovely flight"] * 3 + ["another delay"] * 2), 20)
            removed = httpx.delete(f"{base}/api/v1/watch-terms/delay", headers=admin)
            await wait_for(lambda: _async("watch terms (version 2): strike" in log_path.read_text()), timeout=30,
                           what="the running worker to drop the term", process=worker)
            await send_and_wait(posts("c", ["delay delay"] * 4 + ["strike over"]), 25)
            counts = {scope: await total(scope) for scope in ("all", "term:strike", "term:delay")}
        trail = await accounts_for(settings, redis).audit_trail()
    finally:
        await redis.aclose()
        await _forget(settings)

    assert added.status_code == 200 and added.json()["terms"] == ["delay", "strike"] and added.json()["scope"] == "term:strike"
    assert removed.status_code == 200 and removed.json()["terms"] == ["strike"] and removed.json()["version"] == 2
    # Batch a's six strike posts came before the term: not counted for it (no backfill).
    assert counts == {"all": 25, "term:strike": 8, "term:delay": 4}
    assert [(e["who"], e["what"], e["detail"]) for e in trail if e["what"].startswith("watch term")] == [
        ("token:ops", "watch term removed", "delay (version 2)"),
        ("token:ops", "watch term added", "strike (version 1)"),
    ]


async def _async(value):
    return value


@pytest.fixture
def console_settings(live_services, model_home):
    kafka, redis_url = live_services
    settings = Settings(home=model_home, mlflow_tracking_uri="", kafka_bootstrap=kafka, redis_url=redis_url, redis_prefix=f"test:{uuid.uuid4().hex[:10]}",
                        console_port=free_port(), console_cookie_secure=False, watch_terms=["delay"])
    yield settings
    _run(_forget(settings))


def test_an_admin_adds_and_removes_a_term_by_clicking_and_a_viewer_is_refused(console_settings, tmp_path):
    from playwright.sync_api import sync_playwright

    settings = console_settings
    for name, role in (("ada", "admin"), ("vic", "viewer")):
        _cli(settings, "users", "add", name, "--role", role, "--password-stdin", stdin=PASSWORDS[name] + "\n")
    with running_console(settings, tmp_path / "console.log") as base, sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            def sign_in(name):
                page = chromium.new_context(base_url=base).new_page()
                page.goto("/admin/watch-terms")
                page.fill("input[name=name]", name)
                page.fill("input[name=password]", PASSWORDS[name])
                page.click("button[type=submit]")
                return page

            page = sign_in("ada")
            assert page.locator("#watch-terms tr").all_inner_texts()[1:] == ["delay\tterm:delay\tRemove"]
            page.fill("#add-term input[name=term]", "  Lost  LUGGAGE ")
            page.click("#add-term button")
            assert page.locator("[role=status]").inner_text() == "'lost luggage' is now watched: workers count it from their next batch (version 1)."
            page.fill("#add-term input[name=term]", "DELAY")
            page.click("#add-term button")
            assert page.locator("[role=alert]").inner_text() == "'delay' is already watched"
            page.fill("#add-term input[name=term]", " ")
            page.click("#add-term button")
            assert page.locator("[role=alert]").inner_text() == "a watch term cannot be empty"
            page.click("#watch-terms tr:has-text('term:delay') button")
            assert page.locator("[role=status]").inner_text() == "'delay' is no longer watched: its incidents stay in the history (version 2)."
            assert page.locator("#watch-terms tr").all_inner_texts()[1:] == ["lost luggage\tterm:lost luggage\tRemove"]
            page.goto("/live")
            assert page.eval_on_selector_all("#scope option", "options => options.map(o => o.value)") == ["all", "term:lost luggage"]

            viewer = sign_in("vic")
            assert "this needs the admin role; you are a viewer" in viewer.inner_text("[role=alert]")
            assert viewer.locator("nav >> text=Watch terms").count() == 0
            csrf = viewer.locator("input[name=csrf]").first.get_attribute("value")
            refused = viewer.request.post(f"{base}/admin/watch-terms", form={"csrf": csrf, "action": "add", "term": "strike"})
            assert refused.status == 403
        finally:
            chromium.close()
    assert _run(WatchTerms(aioredis.Redis.from_url(settings.redis_url), prefix=settings.redis_prefix, default=[]).current()) == (2, ["lost luggage"])
