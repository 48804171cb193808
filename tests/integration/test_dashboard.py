"""The worker's web side on the real broker and Redis: a worker process counts a replayed
bad buzz, then ``/api/windows``, ``/metrics`` and the dashboard page (rendered by headless
Chromium) must show exactly the numbers Redis holds."""
from __future__ import annotations

import shutil
import subprocess
import time
from decimal import ROUND_HALF_UP, Decimal
from html.parser import HTMLParser
from pathlib import Path

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from alerting.incidents import IncidentStore
from alerting.rules import Severity, Signal
from badbuzz import replay as rp
from config.topics import ensure_topics
from counting.counters import Counters
from counting.windows import minute_of
from tests.conftest import running_worker, wait_for

pytestmark = pytest.mark.integration

MALFORMED = [b'{"id": "m1", "text": "unterminated', b'{"id": "m2"}', b'{"id": "m3", "text": "   "}']


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("headless Chromium is needed for the dashboard test: apt-get install chromium (make test installs it)")
    return found


def run_chromium(url: str, profile: Path, *args: str) -> str:
    command = [
        chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
        f"--user-data-dir={profile}", "--window-size=1280,1050", "--virtual-time-budget=5000", *args, url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def js_percent(ratio: float) -> str:
    """What the page's ``(100 * x).toFixed(1) + "%"`` prints (ties round up, on the exact double)."""
    return f"{Decimal(100 * ratio).quantize(Decimal('0.1'), rounding=ROUND_HALF_UP)}%"


class Dom(HTMLParser):
    """The rendered DOM: text by element id, and the chart's SVG elements by class."""

    def __init__(self, markup: str):
        super().__init__()
        self.text: dict[str, str] = {}
        self.shapes: dict[str, list[dict]] = {}
        self._open: list[str | None] = []
        self.feed(markup)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "class" in attrs and tag in ("rect", "path"):
            self.shapes.setdefault(attrs["class"], []).append(attrs)
        self._open.append(attrs.get("id"))
        if attrs.get("id"):
            self.text.setdefault(attrs["id"], "")

    def handle_endtag(self, tag):
        if self._open:
            self._open.pop()

    def handle_data(self, data):
        for element_id in self._open:
            if element_id:
                self.text[element_id] += data


async def get(url: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.read()


async def metric_samples(base: str) -> dict[tuple[str, tuple], float]:
    status, body = await get(f"{base}/metrics")
    assert status == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


async def test_dashboard_json_metrics_and_page_show_the_counts_in_redis(isolated, tmp_path):
    settings = isolated.model_copy(update={"watch_terms": ["delay"]})
    posts = rp.load_posts("airline", seed=5)
    calm, negatives = posts[:900], [p for p in posts if p.negative]
    # 45 simulated minutes at 20 posts a minute, the last 5 of them a burst of negatives:
    # the incident is still open when the page is loaded.
    plan = rp.schedule(calm, negatives, [rp.Burst(at_min=40, count=400, duration_min=5)], per_minute=20)
    end_ms = int(time.time() * 1000)
    messages = rp.to_messages(plan, end_ms=end_ms, run_id="dash")
    await ensure_topics(settings, [settings.topic_raw, settings.topic_dlq, settings.topic_alerts])
    await rp.produce(messages, settings=settings, topic=settings.topic_raw, rate=0)
    await rp.produce([(b"bad", m, False) for m in MALFORMED], settings=settings, topic=settings.topic_raw, rate=0)

    redis = aioredis.Redis.from_url(settings.redis_url)
    counters = Counters(redis, prefix=settings.redis_prefix, ttl_s=settings.counter_ttl_s)
    incidents = IncidentStore(redis, prefix=settings.redis_prefix, ttl_s=settings.counter_ttl_s)
    first, last = minute_of(end_ms - plan[-1].offset_ms), minute_of(end_ms)
    base = f"http://127.0.0.1:{settings.web_port}"
    consumed = len(messages) + len(MALFORMED)

    async def everything_consumed():
        try:
            return (await metric_samples(base)).get(("badbuzz_posts_consumed_total", ())) == consumed
        except aiohttp.ClientError:
            return False  # the web server is not up yet

    with running_worker(settings, tmp_path / "worker.log") as worker:
        await wait_for(everything_consumed, timeout=150, what=f"{consumed} messages to be consumed", process=worker)
        # The truth, straight from Redis.
        buckets = await counters.buckets("all", range(first, last + 1))
        watermark = await counters.watermark_ms()
        end = minute_of(watermark)
        window = await counters.window("all", end, settings.alert_window_min)
        incident = await incidents.get("all", Signal.NEGATIVE_RATE)
        assert sum(b.total for b in buckets.values()) == len(messages)
        assert incident is not None and incident.is_open, "the burst should have opened an incident"

        status, body = await get(f"{base}/api/windows?scope=all&minutes=60")
        assert status == 200
        data = orjson.loads(body)
        by_minute = {p["minute"]: p for p in data["points"]}
        assert len(data["points"]) == 60 and data["end_minute"] == end
        for minute in range(end - 59, end + 1):
            bucket = buckets.get(minute)
            assert (by_minute[minute]["posts"], by_minute[minute]["negative"]) == ((bucket.total, bucket.negative) if bucket else (0, 0)), minute
        assert data["latest"]["15"] == {"minutes": 15, "posts": window.total, "negative": window.negative, "rate": window.rate}
        (shown,) = [i for i in data["incidents"] if i["signal"] == "negative_rate"]
        assert (shown["id"], shown["severity"], shown["open"]) == (incident.id, incident.severity.value, True)
        assert data["baseline"] == incident.baseline and data["baseline_frozen"]
        assert data["scopes"] == ["all", "term:delay"]

        assert await get(f"{base}/api/windows?scope=term:nope") == (400, b'{"error":"unknown scope \'term:nope\'; known scopes: all, term:delay"}')
        status, body = await get(f"{base}/api/windows?minutes=5")
        assert (status, orjson.loads(body)["error"]) == (400, "minutes must be a whole number from 10 to 2880, got '5'")

        async def shared_figures_caught_up():
            # One worker computes the shared figures every few seconds (stream.web.SharedMetrics).
            return (await metric_samples(base)).get(("badbuzz_event_watermark_timestamp_seconds", ())) == watermark / 1000

        await wait_for(shared_figures_caught_up, timeout=30, what="the shared figures to include the last batch", process=worker)
        got = await metric_samples(base)
        assert got[("badbuzz_shared_metrics_age_seconds", ())] < 30
        assert got[("badbuzz_posts_counted_total", ())] == len(messages)
        assert got[("badbuzz_posts_scored_total", ())] == len(messages)
        assert got[("badbuzz_posts_duplicate_total", ())] == 0
        dlq = {dict(labels)["reason"]: v for (name, labels), v in got.items() if name == "badbuzz_posts_dead_lettered_total" and v}
        assert dlq == {"invalid_json": 1, "missing_field": 1, "empty_field": 1}
        assert got[("badbuzz_window_posts", (("scope", "all"), ("window", "15m")))] == window.total
        assert got[("badbuzz_negative_rate_ratio", (("scope", "all"), ("window", "15m")))] == window.rate
        assert got[("badbuzz_open_incidents", (("scope", "all"), ("severity", incident.severity.value), ("signal", "negative_rate")))] == 1
        assert got[("badbuzz_event_watermark_timestamp_seconds", ())] == watermark / 1000
        assert got[("badbuzz_assigned_partitions", ())] == settings.topic_partitions
        lag = {dict(labels)["partition"]: v for (name, labels), v in got.items() if name == "badbuzz_consumer_lag_messages"}
        assert lag == {str(p): 0 for p in range(settings.topic_partitions)}
        raised = {
            (dict(labels)["action"], dict(labels)["severity"]): v
            for (name, labels), v in got.items()
            if name == "badbuzz_alerts_total" and dict(labels)["signal"] == "negative_rate" and v
        }
        # One incident, opened once; the backlog is spread over the partitions' batches, so
        # it may open below its final severity and escalate to it, once per step.
        assert sum(v for (action, _), v in raised.items() if action == "opened") == 1
        assert set(raised.values()) == {1} and {action for action, _ in raised} <= {"opened", "escalated"}
        assert max((Severity(severity) for _, severity in raised), key=lambda s: s.rank) == incident.severity
        assert got[("badbuzz_event_latency_seconds_count", ())] == len(messages)
        assert got[("badbuzz_redis_up", ())] == 1
        outbox = {(dict(labels)["sink"], dict(labels)["state"]): v for (name, labels), v in got.items() if name == "badbuzz_alert_outbox_messages"}
        assert {sink for sink, _ in outbox} == {"console", "kafka"} and outbox[("kafka", "failed")] == 0
        model = dict(next(labels for (name, labels) in got if name == "badbuzz_model_info"))
        assert (model["name"], model["version"], model["family"]) == ("badbuzz-sentiment", "1", "tfidf")

        page_url = f"{base}/dashboard?scope=all&minutes=60"
        dom = Dom(run_chromium(page_url, tmp_path / "chromium", "--dump-dom"))
        screenshot = tmp_path / "dashboard.png"
        run_chromium(page_url, tmp_path / "chromium", f"--screenshot={screenshot}")

    # The page shows Redis's numbers.
    assert dom.text["rate-15"] == js_percent(window.rate)
    assert dom.text["posts-15"] == f"{window.negative} of {window.total} posts"
    five = await counters.window("all", end, 5)
    assert dom.text["rate-5"] == js_percent(five.rate)
    assert dom.text["baseline"] == js_percent(incident.baseline)
    opened = time.strftime("%H:%M", time.gmtime(incident.opened_ms / 1000))
    assert (
        f"{incident.severity.value.upper()} alert since {opened} UTC: negative posts are well above their usual level of {js_percent(incident.baseline)}"
        in dom.text["status"]
    )
    bars = {int(b["data-minute"]): (int(b["data-posts"]), int(b["data-negative"])) for b in dom.shapes["bar"]}
    assert bars == {m: (b.total, b.negative) for m, b in buckets.items() if end - 59 <= m <= end}
    assert [b["data-signal"] for b in dom.shapes["incident"]] == ["negative_rate"]
    assert len(dom.shapes["rate"]) == 1 and len(dom.shapes["baseline"]) == 1
    assert dom.text["scope"].startswith("All posts")
    await redis.aclose()

    # The screenshot is a drawn chart, not a blank page: the bars' blue, the rate line's
    # red and the incident band are all there.
    image = Image.open(screenshot).convert("RGB")
    assert image.size == (1280, 1050)
    colours = image.getcolors(maxcolors=1 << 20)

    def count(*near: tuple[int, int, int]) -> int:
        return sum(n for n, rgb in colours if any(all(abs(a - b) <= 12 for a, b in zip(rgb, c)) for c in near))

    drawn = image.width * image.height - count((245, 247, 250), (255, 255, 255))
    bars, red = count((0x9D, 0xB7, 0xD5)), count((0xC6, 0x28, 0x28))
    print(f"\nscreenshot {screenshot}: {drawn} non-background pixels, {bars} bar pixels, {red} red (rate line, alert label)")
    assert drawn > 100_000, "the page is mostly blank"
    assert bars > 20_000, "no volume bars drawn"
    assert red > 1_000, "no negative-rate line drawn"
