"""Alert delivery against real services: sinks post their real payloads to HTTP servers on
loopback (Slack's webhook and Web API, Application Insights' ingestion endpoint), the
outbox lives in the real Redis, and two escalators share it as two workers would."""
from __future__ import annotations

import asyncio
import sys
import time
import uuid
from dataclasses import replace

import orjson
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer

from alerting.alert import Alert
from alerting.appinsights import AppInsightsError, AppInsightsSink, feedback_handler
from alerting.delivery import Delivery
from alerting.escalation import Escalator
from alerting.feedback import FeedbackProcessor, FeedbackStore, ModelQualityMonitor, feedback_log, make_feedback, send_feedback
from alerting.incidents import IncidentStore, next_incident
from alerting.outbox import Outbox, OutboxConfig
from alerting.rules import Baseline, Observation, Signal, decide
from alerting.slack import COLOURS, SlackBotSink, SlackWebhookSink
from badbuzz import replay as rp
from badbuzz.processes import settings_env
from benchmarks.keys import delete_prefix
from config.topics import ensure_topics
from counting.counters import Counters, ScoredPost
from counting.windows import WindowStats
from models.scorer import ModelInfo
from tests.configs import CONTENT, DEFAULTS, rule_config
from tests.conftest import running_worker, wait_for, worker_env_base
from tests.loopback import Loopback

pytestmark = pytest.mark.integration

IKEY = "6f0e2c1a-1b2c-4d3e-8f90-123456789abc"
MODEL = ModelInfo("tfidf", "negative_vs_rest", 0.5, "badbuzz-sentiment", "3", "models:/badbuzz-sentiment/3")
FAST = OutboxConfig(retention_s=600, backoff_s=0.05, backoff_max_s=0.2, lease_s=5)


def alert(action="opened", seq=1, severity="warning", incident="rate-all-20260101T1200-abcd1234", **kw) -> Alert:
    fields = dict(
        alert_id=f"{incident}.{seq}", incident_id=incident, seq=seq, signal="negative_rate", action=action, severity=severity,
        scope="all", window_start="2026-01-01T11:46:00Z", window_end="2026-01-01T12:01:00Z", window_minutes=15,
        short_window_minutes=5, rate=0.8, short_rate=0.85, baseline=0.6, baseline_source="trailing", volume=600, negatives=480,
        expected_volume=590.0, volume_ratio=1.02, p_value=1e-12,
        drivers=[{"term": "cancelled", "count": 120, "baseline_count": 4, "z": 9.1}, {"term": "hold", "count": 80, "baseline_count": 9, "z": 6.2}],
        example_post_ids=["1001", "1002"], model="badbuzz-sentiment v3 (tfidf)", model_version="3", link="https://example.test/incidents/x",
    )
    fields.update(kw)
    return Alert(**fields)


def same(stored, expected) -> bool:
    """The incident as committed, apart from the paging time the store stamps on it."""
    return stored is not None and replace(stored, response=expected.response) == expected


@pytest.fixture
async def redis(live_services):
    client = aioredis.Redis.from_url(live_services[1])
    yield client
    await client.aclose()


@pytest.fixture
def prefix(redis):
    return f"test:alerts:{uuid.uuid4().hex[:10]}"


@pytest.fixture(autouse=True)
async def _drop_own_keys(redis, prefix):
    yield
    await delete_prefix(redis, prefix)


async def test_slack_webhook_posts_block_kit_with_the_severity_colour():
    async with Loopback() as slack:
        sink = SlackWebhookSink(f"{slack.url}/services/T000/B000/XXXX")
        await sink.send(alert(severity="critical"))
        await sink.send(alert(action="resolved", seq=2, severity="critical"))
    first, resolved = slack.json()
    assert slack.requests[0]["path"] == "/services/T000/B000/XXXX"
    assert first["text"] == "Bad buzz [CRITICAL] on all posts"
    (attachment,) = first["attachments"]
    assert attachment["color"] == COLOURS["critical"] == "#E01E5A"
    header, numbers, fields, drivers, buttons, context = attachment["blocks"]
    assert header["text"]["text"] == ":rotating_light: Bad buzz [CRITICAL] on all posts"
    assert numbers["text"]["text"].startswith("negative rate 80.0% over 15 min (480/600 posts), 85.0% over the last 5 min, vs baseline 60.0%")
    assert [f["text"] for f in fields["fields"]][:4] == [
        "*Negative rate*\n80.0% (480/600)", "*Baseline*\n60.0% (trailing)", "*Volume*\n600 posts (usual 590)", "*p-value*\n1e-12",
    ]
    assert drivers["text"]["text"] == "*Drivers:* `cancelled` (120 vs 4), `hold` (80 vs 9)\n*Example posts:* `1001`, `1002`"
    assert [b["text"]["text"] for b in buttons["elements"]] == ["Acknowledge", "Snooze 1 h", "False alarm"]
    assert context["elements"][0]["text"] == (
        "incident `rate-all-20260101T1200-abcd1234` · alert `rate-all-20260101T1200-abcd1234.1` · <https://example.test/incidents/x|look it up>"
    )
    assert resolved["text"] == "Bad buzz resolved [CRITICAL] on all posts"
    assert resolved["attachments"][0]["color"] == COLOURS["resolved"]


async def test_slack_webhook_failure_raises():
    async with Loopback(lambda n: (500, "internal_error")) as slack:
        with pytest.raises(RuntimeError, match="Slack webhook answered 500"):
            await SlackWebhookSink(f"{slack.url}/services/x").send(alert())


async def test_slack_bot_threads_updates_under_the_opening_message(redis, prefix):
    def respond(n):
        return 200, {"ok": True, "channel": "C0ALERTS", "ts": f"1767268800.00010{n}"}

    async with Loopback(respond) as slack:
        sink = SlackBotSink("xoxb-test-token", "#bad-buzz", redis, prefix=prefix, ttl_s=600, base_url=f"{slack.url}/api/")
        await sink.send(alert())
        await sink.send(alert(action="escalated", seq=2, severity="critical"))
        await sink.send(alert(action="resolved", seq=3, severity="critical"))
        await sink.send(alert(action="resolved", seq=3, severity="critical"))  # redelivered: not posted again
    assert [r["path"] for r in slack.requests] == ["/api/chat.postMessage"] * 3
    assert slack.requests[0]["headers"]["Authorization"] == "Bearer xoxb-test-token"
    opened, escalated, resolved = slack.json()
    assert opened["channel"] == "#bad-buzz" and "thread_ts" not in opened
    assert opened["attachments"][0]["color"] == COLOURS["warning"]
    assert (escalated["channel"], escalated["thread_ts"], escalated["reply_broadcast"]) == ("C0ALERTS", "1767268800.000100", True)
    assert (resolved["thread_ts"], resolved["reply_broadcast"]) == ("1767268800.000100", False)
    assert resolved["text"] == "Bad buzz resolved [CRITICAL] on all posts"


async def test_slack_bot_api_error_raises(redis, prefix):
    async with Loopback(lambda n: (200, {"ok": False, "error": "channel_not_found"})) as slack:
        sink = SlackBotSink("xoxb-test-token", "#nowhere", redis, prefix=prefix, ttl_s=600, base_url=f"{slack.url}/api/")
        with pytest.raises(Exception, match="channel_not_found"):
            await sink.send(alert())


async def test_app_insights_receives_event_trace_and_metrics_envelopes():
    async with Loopback(lambda n: (200, {"itemsReceived": 4, "itemsAccepted": 4, "errors": []})) as ingestion:
        sink = AppInsightsSink(f"InstrumentationKey={IKEY};IngestionEndpoint={ingestion.url}/")
        await sink.send(alert(severity="critical"))
    assert [r["path"] for r in ingestion.requests] == ["/v2.1/track"]
    event, trace, rate, volume = ingestion.json()[0]
    assert {e["iKey"] for e in (event, trace, rate, volume)} == {IKEY}
    assert {e["tags"]["ai.operation.id"] for e in (event, trace, rate, volume)} == {"rate-all-20260101T1200-abcd1234"}
    assert event["name"] == "Microsoft.ApplicationInsights.Event"
    data = event["data"]["baseData"]
    assert data["name"] == "badbuzz.alert"
    props = data["properties"]
    assert (props["alert_id"], props["action"], props["severity"], props["scope"], props["signal"]) == (
        "rate-all-20260101T1200-abcd1234.1", "opened", "critical", "all", "negative_rate",
    )
    assert (props["rate"], props["baseline"], props["volume"], props["p_value"]) == ("0.8", "0.6", "600", "1e-12")
    assert (props["drivers"], props["example_post_ids"], props["model_version"]) == ("cancelled,hold", "1001,1002", "3")
    assert (props["window_start"], props["window_end"]) == ("2026-01-01T11:46:00Z", "2026-01-01T12:01:00Z")
    assert data["measurements"]["rate"] == 0.8 and data["measurements"]["volume"] == 600.0
    assert trace["name"] == "Microsoft.ApplicationInsights.Message"
    assert trace["data"]["baseData"]["severityLevel"] == 3  # critical: Error
    assert trace["data"]["baseData"]["message"].startswith("Bad buzz [CRITICAL] on all posts: negative rate 80.0%")
    assert [(m["name"], m["data"]["baseData"]["metrics"][0]["name"], m["data"]["baseData"]["metrics"][0]["value"]) for m in (rate, volume)] == [
        ("Microsoft.ApplicationInsights.Metric", "badbuzz.negative_rate", 0.8),
        ("Microsoft.ApplicationInsights.Metric", "badbuzz.volume", 600.0),
    ]
    assert rate["data"]["baseData"]["properties"] == {
        "signal": "negative_rate",
        "scope": "all",
        "incident_id": "rate-all-20260101T1200-abcd1234",
        "action": "opened",
    }


async def test_app_insights_outage_raises_so_the_outbox_retries():
    async with Loopback(lambda n: (503, {"error": "down"})) as ingestion:
        sink = AppInsightsSink(f"InstrumentationKey={IKEY};IngestionEndpoint={ingestion.url}/")
        with pytest.raises(AppInsightsError, match="retryable"):
            await sink.send(alert())


async def test_outbox_delivers_exactly_once_per_sink_through_outage_and_restart(redis, prefix, live_services):
    # The webhook fails (500) for its first eight requests, then recovers.
    async with Loopback(lambda n: (500, "down") if n < 8 else (200, "ok")) as slack, Loopback() as other:
        sinks = [SlackWebhookSink(f"{slack.url}/hook"), SlackWebhookSink(f"{other.url}/hook")]
        sinks[1].name = "slack-2"
        outbox = Outbox(redis, prefix=prefix, sinks=[s.name for s in sinks], cfg=FAST)
        alerts = [alert(), alert(action="escalated", seq=2, severity="critical"), alert(incident="volume-delay-x", signal="volume")]
        for a in alerts:
            assert await outbox.enqueue(a, now_ms=int(time.time() * 1000))
        assert not await outbox.enqueue(alerts[0], now_ms=int(time.time() * 1000))  # same alert id: queued once

        # A first worker delivers while the webhook is down, then stops (cancelled mid-way).
        first = asyncio.create_task(Delivery(outbox, sinks, send_timeout_s=DEFAULTS.outbox_send_timeout_s, poll_s=0.05).run())
        await _until(lambda: len(slack.requests) >= 3)
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        assert all(r["status"] == 500 for r in slack.requests)
        assert await outbox.pending("slack") == 3

        # Two fresh workers (own Redis connections, as after a restart) share the queue.
        restarted = []
        for _ in range(2):
            client = aioredis.Redis.from_url(live_services[1])
            box = Outbox(client, prefix=prefix, sinks=[s.name for s in sinks], cfg=FAST)
            restarted.append((client, asyncio.create_task(Delivery(box, sinks, send_timeout_s=DEFAULTS.outbox_send_timeout_s, poll_s=0.05).run())))
        try:
            await _until(lambda: len(slack.json()) == 3, timeout=20)
            await asyncio.sleep(0.5)  # room for a duplicate to show up, if there were one
        finally:
            for client, task in restarted:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                await client.aclose()

    delivered = [body["attachments"][0]["blocks"][-1]["elements"][0]["text"] for body in slack.json()]
    assert sorted(delivered) == sorted(f"incident `{a.incident_id}` · alert `{a.alert_id}` · <https://example.test/incidents/x|look it up>" for a in alerts)
    assert len(other.json()) == 3  # the healthy sink got each alert once and was never held up
    # Within an incident the escalation came after the opening.
    texts = [body["text"] for body in slack.json()]
    assert texts.index("Bad buzz [WARNING] on all posts") < texts.index("Bad buzz escalated [CRITICAL] on all posts")
    assert await outbox.pending("slack") == 0 and await outbox.pending("slack-2") == 0
    assert all([await outbox.is_delivered("slack", a.alert_id) for a in alerts])


class SlowSink:
    """A sink whose every send takes ``seconds``; records which worker sent what."""

    def __init__(self, name: str, seconds: float, log: list[tuple[str, str]], worker: str):
        self.name, self.seconds, self.log, self.worker = name, seconds, log, worker

    async def send(self, alert: Alert) -> None:
        await asyncio.sleep(self.seconds)
        self.log.append((self.worker, alert.alert_id))


async def test_a_batch_of_slow_sends_never_hands_an_alert_to_a_second_worker(redis, prefix, live_services, monkeypatch):
    """Ten alerts claimed at once take 10 s to send, four times the lease: without renewal
    another worker claims the unsent ones when the lease runs out and sends them too."""
    import alerting.delivery as delivery

    monkeypatch.setattr(delivery, "LEASE_MARGIN_S", 0.5)
    sent: list[tuple[str, str]] = []
    cfg = OutboxConfig(retention_s=600, backoff_s=0.05, backoff_max_s=0.2, lease_s=1)
    outbox = Outbox(redis, prefix=prefix, sinks=["slow"], cfg=cfg)
    alerts = [alert(incident=f"rate-all-{i}") for i in range(10)]
    for a in alerts:
        assert await outbox.enqueue(a, now_ms=int(time.time() * 1000))
    first = asyncio.create_task(Delivery(outbox, [SlowSink("slow", 1.0, sent, "A")], send_timeout_s=2, poll_s=0.05).run())
    await _until(lambda: len(sent) >= 1, timeout=10)
    client = aioredis.Redis.from_url(live_services[1])
    second = asyncio.create_task(
        Delivery(Outbox(client, prefix=prefix, sinks=["slow"], cfg=cfg), [SlowSink("slow", 1.0, sent, "B")], send_timeout_s=2, poll_s=0.05).run()
    )
    try:
        await _until(lambda: len({i for _, i in sent}) == 10, timeout=30)
        await asyncio.sleep(3)  # a duplicate send would land within this
    finally:
        for task in (first, second):
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await client.aclose()
    ids = [i for _, i in sent]
    assert sorted(ids) == sorted(a.alert_id for a in alerts)  # each exactly once
    assert await outbox.pending("slow") == 0


async def test_two_workers_opening_the_same_incident_announce_it_once(redis, prefix, live_services):
    cfg = rule_config(prior=0.5)
    minute = int(time.time() // 60) - 1
    counters = Counters(redis, prefix=prefix, ttl_s=600)
    posts = [ScoredPost(f"p{i}", minute * 60_000 + i, 0.5 + i / 1000, True, ["all"], ["cancelled"]) for i in range(120)]
    await counters.count(posts, model_version="3")
    workers = []
    queued_here: list[list] = [[], []]
    for hook in queued_here:
        client = aioredis.Redis.from_url(live_services[1])
        box = Outbox(client, prefix=prefix, sinks=["console", "kafka"], cfg=FAST)
        store = IncidentStore(client, prefix=prefix, ttl_s=600, outbox=box, on_announced=hook.append)
        workers.append(
            (client, Escalator(Counters(client, prefix=prefix, ttl_s=600), store, cfg, ["all"], lambda: MODEL, content=CONTENT, idle_s=DEFAULTS.alert_idle_s))
        )
    try:
        results = await asyncio.gather(*(escalator.evaluate(minute) for _, escalator in workers))
        again = await asyncio.gather(*(escalator.evaluate(minute) for _, escalator in workers))
    finally:
        for client, _ in workers:
            await client.aclose()
    announced = [a for batch in results for a in batch]
    assert [(a.action, a.severity, a.scope, a.seq) for a in announced] == [("opened", "warning", "all", 1)]
    assert again == [[], []]
    # Each process's metrics see only what it queued itself: one alert in all.
    assert sorted(queued_here, key=len) == [[], announced]
    outbox = Outbox(redis, prefix=prefix, sinks=["console", "kafka"], cfg=FAST)
    assert await outbox.pending("console") == 1 and await outbox.pending("kafka") == 1
    stored = await outbox.load(announced[0].alert_id)
    assert stored == announced[0]
    # The most confidently negative posts; the only term (no reference yet) is the driver.
    assert (stored.example_post_ids, stored.top_terms, stored.model_version) == (["p119", "p118", "p117", "p116", "p115"], ["cancelled"], "3")
    # What is kept of the posts the alert showed outlives their place among the minute's
    # examples; posts pushed out that no alert showed are not kept.
    for name, score in (("q", 0.9), ("r", 0.95)):
        await counters.count([ScoredPost(f"{name}{i}", minute * 60_000 + 500, score, True, ["all"], ["cancelled"]) for i in range(5)], model_version="3")
    assert await counters.examples("all", range(minute, minute + 1), 5) == [f"r{i}" for i in range(5)]
    kept = await counters.predictions([*stored.example_post_ids, "q0"])
    assert [p is not None and p.negative for p in kept.values()] == [True] * 5 + [False]


async def test_an_incident_keeps_its_id_through_the_cool_down_and_stale_changes_lose(redis, prefix):
    outbox = Outbox(redis, prefix=prefix, sinks=["console"], cfg=FAST)
    store = IncidentStore(redis, prefix=prefix, ttl_s=600, outbox=outbox)
    cfg = rule_config(margin=0.15, cooldown_min=30)

    def observed(minute, long, short):
        return Observation(minute, WindowStats(0, 0, *short, 0.0), WindowStats(0, 0, *long, 0.0), Baseline(0.6, 40.0, "trailing", 9000))

    async def apply(current, minute, long, short):
        decision = decide(Signal.NEGATIVE_RATE, observed(minute, long, short), current.episode if current else None, cfg)
        new = next_incident(current, Signal.NEGATIVE_RATE, "all", decision, minute)
        announced = alert(action=decision.action.value, seq=new.seq, incident=new.id, severity=decision.severity.value)
        assert await store.commit(current, new, announced, now_ms=int(time.time() * 1000))
        return new

    opened = await apply(None, 100, (600, 480), (200, 170))
    assert same(await store.get("all"), opened) and opened.seq == 1
    resolved = await apply(opened, 120, (600, 370), (200, 120))
    # Kept through the cool-down, as resolved: the rule still sees the episode.
    assert same(await store.get("all"), resolved) and not resolved.is_open
    reopened = await apply(resolved, 140, (600, 480), (200, 170))
    assert (reopened.id, reopened.seq, reopened.is_open) == (opened.id, 3, True)
    # A worker that still holds the resolved incident cannot announce anything over it.
    stale = next_incident(
        resolved, Signal.NEGATIVE_RATE, "all", decide(Signal.NEGATIVE_RATE, observed(141, (600, 480), (200, 170)), resolved.episode, cfg), 141
    )
    assert not await store.commit(resolved, stale, alert(seq=stale.seq, incident=stale.id), now_ms=0)
    queued = await redis.zrange(outbox.keys.queue("console"), 0, -1)
    assert sorted(q.decode() for q in queued) == [f"{opened.id}.1", f"{opened.id}.2", f"{opened.id}.3"]


async def test_wrong_prediction_feedback_raises_a_model_quality_alert(redis, prefix, tmp_path):
    counters = Counters(redis, prefix=prefix, ttl_s=600, keep_predictions="all")
    now = time.time()
    minute = int(now // 60)
    # Twelve posts the model called negative, two it called not negative.
    posts = [ScoredPost(f"n{i}", minute * 60_000, 0.91, True, ["all"], ["late"]) for i in range(12)]
    posts += [ScoredPost(f"ok{i}", minute * 60_000, 0.08, False, ["all"], []) for i in range(2)]
    await counters.count(posts, model_version="3")
    outbox = Outbox(redis, prefix=prefix, sinks=["kafka"], cfg=FAST)
    incidents = IncidentStore(redis, prefix=prefix, ttl_s=600, outbox=outbox)
    store = FeedbackStore(redis, prefix=prefix, ttl_s=600)
    monitor = ModelQualityMonitor(store, incidents, rule_config(model_wrong_threshold=10), lambda: MODEL)
    processor = FeedbackProcessor(counters, store, monitor, lambda: MODEL, clock=lambda: now)

    async with Loopback(lambda n: (200, {"itemsReceived": 1, "itemsAccepted": 1, "errors": []})) as ingestion:
        handler = feedback_handler(f"InstrumentationKey={IKEY};IngestionEndpoint={ingestion.url}/", storage_dir=tmp_path, export_interval_s=0.1)
        feedback_log.addHandler(handler)
        try:
            feedback = lambda post, label, comment="": make_feedback(post, label, comment, now_ms=int(now * 1000)).to_json()  # noqa: E731
            assert await processor.handle(feedback("ok0", "negative", "@jane_doe says see https://t.co/abc it was rude")) is None
            assert await processor.handle(feedback("ok1", "positive")) is None  # right: not counted
            assert await processor.handle(feedback("unknown-post", "positive")) is None  # no prediction known
            for i in range(9):
                assert await processor.handle(feedback(f"n{i}", "positive")) is None
            assert await processor.handle(feedback("n0", "positive")) is None  # same post again: still ten
            opened = await processor.handle(feedback("n9", "positive"))  # the eleventh wrong prediction
            assert await processor.handle(b'{"post_id": "x", "label": "maybe", "submitted_at": 1}') is None
            # The handler's thread posts to this event loop's server: never block the loop.
            await asyncio.to_thread(handler.flush, 10)
            await _until(lambda: sum(map(len, ingestion.json())) >= 14, timeout=15)
        finally:
            feedback_log.removeHandler(handler)
            await asyncio.to_thread(handler.close)
        traces = [envelope for batch in ingestion.json() for envelope in batch]

    assert (opened.signal, opened.action, opened.severity, opened.scope, opened.feedback_wrong, opened.feedback_threshold) == (
        "model_quality",
        "opened",
        "warning",
        "model",
        11,
        10,
    )
    # Newest first; all were submitted in the same millisecond, so Redis orders by id.
    assert opened.example_post_ids == ["ok0", "n9", "n8", "n7", "n6"]
    assert await outbox.pending("kafka") == 1
    record = await store.get("ok0")
    assert record == {
        "post_id": "ok0",
        "label": "negative",
        "predicted_label": "not_negative",
        "predicted_score": 0.08,
        "model_version": "3",
        "wrong": True,
        "comment": "<user> says see <url> it was rude",
        "submitted_at": int(now * 1000),
        "received_at": int(now * 1000),
        "source": "cli",
    }
    assert (await store.get("unknown-post"))["wrong"] is None
    by_post = {t["data"]["baseData"]["properties"]["prediction_id"]: t for t in traces}
    assert set(by_post) == {"ok0", "ok1", "unknown-post", *(f"n{i}" for i in range(10))}
    trace = by_post["n9"]
    assert trace["name"] == "Microsoft.ApplicationInsights.Message"
    assert trace["data"]["baseData"]["severityLevel"] == 2  # warning
    props = trace["data"]["baseData"]["properties"]
    assert (props["true_label"], props["predicted_label"], props["verdict"], props["model_version"]) == ("positive", "negative", "wrong", "3")
    assert "jane_doe" not in orjson.dumps(traces).decode() and "t.co" not in orjson.dumps(traces).decode()


async def test_a_worker_delivers_through_its_outbox_and_takes_feedback(isolated, tmp_path):
    """The real wiring: a worker process with Slack and Application Insights pointing at
    loopback, a replayed burst, then feedback through the CLI and the topic."""
    settings = isolated.model_copy(update={"watch_terms": ["delay"], "alert_model_wrong_threshold": 3})
    posts = rp.load_posts("airline", seed=5)
    plan = rp.schedule(posts[:900], [p for p in posts if p.negative], [rp.Burst(30, 400, 8)], per_minute=20)
    messages = rp.to_messages(plan, end_ms=int(time.time() * 1000), run_id="wburst")
    produced = {key.decode() for key, _, _ in messages}
    burst_ids = [key.decode() for key, _, is_burst in messages if is_burst]
    await ensure_topics(settings, [settings.topic_raw, settings.topic_dlq, settings.topic_alerts, settings.topic_feedback])
    accepted = lambda n: (200, {"itemsReceived": 1, "itemsAccepted": 1, "errors": []})  # noqa: E731

    async with Loopback() as slack, Loopback(accepted) as ingestion:
        sinks = {
            "SLACK_WEBHOOK_URL": f"{slack.url}/services/T1/B1/secret",
            "APPLICATIONINSIGHTS_CONNECTION_STRING": f"InstrumentationKey={IKEY};IngestionEndpoint={ingestion.url}/",
        }
        with running_worker(settings, tmp_path / "worker.log", **sinks) as worker:
            await rp.produce(messages, settings=settings, topic=settings.topic_raw, rate=0)

            async def slack_says(prefix, suffix=""):
                return [m for m in slack.json() if m["text"].startswith(prefix) and m["text"].endswith(suffix)]

            opened = await wait_for(lambda: slack_says("Bad buzz [", "on all posts"), timeout=120, what="the bad-buzz alert on Slack", process=worker)
            # The analyst disagrees with the posts the alert showed (whose predictions are
            # kept), and with posts it did not show (unknown to the model-quality check).
            blocks = opened[0]["attachments"][0]["blocks"]
            examples = blocks[3]["text"]["text"].split("*Example posts:* ")[1].replace("`", "").split(", ")
            judged = examples + [post_id for post_id in burst_ids if post_id not in examples][:10 - len(examples)]
            cli = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "badbuzz.cli",
                "feedback",
                judged[0],
                "--label",
                "positive",
                "--comment",
                "@someone it was a joke http://t.co/x",
                env={**worker_env_base(), **settings_env(settings)},
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await cli.communicate()
            assert (cli.returncode, out.decode()) == (0, f"feedback on post {judged[0]} (positive) sent to {settings.topic_feedback}\n"), err.decode()
            for post_id in judged[1:]:
                await send_feedback(settings, make_feedback(post_id, "positive", now_ms=int(time.time() * 1000)))
            quality = await wait_for(
                lambda: slack_says("Model quality [WARNING] on the sentiment model"), timeout=60, what="the model-quality alert", process=worker
            )

            async def feedback_traces():
                traces = [e for batch in ingestion.json() for e in batch if e["data"]["baseData"].get("properties", {}).get("prediction_id")]
                return traces if len(traces) >= 10 else None

            traces = await wait_for(feedback_traces, timeout=60, what="the feedback traces in App Insights", process=worker)
        alerts = [orjson.loads(r.value) for r in await _drain(settings, settings.topic_alerts)]

    assert len(examples) == 5 and set(examples) <= produced
    assert blocks[1]["text"]["text"].startswith("negative rate ")
    assert quality[0]["attachments"][0]["blocks"][1]["text"]["text"] == "4 wrong-prediction feedbacks in 15 min (alert above 3)"
    # The outbox fans each alert out to every sink, once per sink.
    slack_ids = [m["attachments"][0]["blocks"][-1]["elements"][0]["text"].split("alert `")[1].split("`")[0] for m in slack.json()]
    event_ids = [
        e["data"]["baseData"]["properties"]["alert_id"] for batch in ingestion.json() for e in batch if e["name"] == "Microsoft.ApplicationInsights.Event"
    ]
    kafka_ids = [a["alert_id"] for a in alerts]
    key = {(a["signal"], a["action"]): a["alert_id"] for a in alerts}
    must = {key[("negative_rate", "opened")], key[("model_quality", "opened")]}
    for ids in (slack_ids, event_ids, kafka_ids):
        assert len(ids) == len(set(ids)) and must <= set(ids)
    by_post = {t["data"]["baseData"]["properties"]["prediction_id"]: t["data"]["baseData"]["properties"] for t in traces}
    assert set(by_post) == set(judged)
    assert by_post[judged[0]]["comment"] == "<user> it was a joke <url>"
    assert {p["true_label"] for p in by_post.values()} == {"positive"}
    # The model's word is known on the posts the alert showed, not on the others.
    assert [by_post[post_id]["model_version"] for post_id in judged] == ["1"] * len(examples) + [""] * (len(judged) - len(examples))
    assert "secret" not in (tmp_path / "worker.log").read_text()


async def _drain(settings, topic):
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    records = []
    try:
        while batch := await consumer.getmany(timeout_ms=3000):
            for part in batch.values():
                records.extend(part)
    finally:
        await consumer.stop()
    return records


async def _until(predicate, *, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.02)


async def test_within_a_minute_only_the_scopes_a_batch_touched_are_read_again(redis, prefix):
    cfg = rule_config(prior=0.5)
    minute = int(time.time() // 60) - 1
    counters = Counters(redis, prefix=prefix, ttl_s=600)
    read: list[list[str]] = []
    snapshot = counters.snapshot

    async def recording_snapshot(scopes, minutes, hours):
        read.append(list(scopes))
        return await snapshot(scopes, minutes, hours)

    counters.snapshot = recording_snapshot
    store = IncidentStore(redis, prefix=prefix, ttl_s=600, outbox=Outbox(redis, prefix=prefix, sinks=["console"], cfg=FAST))
    escalator = Escalator(counters, store, cfg, ["term:bag", "term:seat"], lambda: MODEL, content=CONTENT, idle_s=DEFAULTS.alert_idle_s)
    calm = [ScoredPost(f"c{i}", minute * 60_000 + i, 0.2, False, ["all"], ()) for i in range(120)]
    await counters.count(calm)
    assert await escalator.evaluate(minute) == []
    assert all(scopes == ["all", "term:bag", "term:seat"] for scopes in read)

    read.clear()
    burst = [ScoredPost(f"b{i}", minute * 60_000 + i, 0.9, True, ["all", "term:bag"], ["bag"]) for i in range(120)]
    await counters.count(burst)
    announced = await escalator.evaluate(minute, {"all", "term:bag"})
    assert read == [["all", "term:bag"]]
    assert ("opened", "term:bag") in {(a.action, a.scope) for a in announced}

    read.clear()
    await escalator.evaluate(minute + 1, {"all"})
    assert read and read[-1] == ["all", "term:bag", "term:seat"]


async def test_alert_examples_are_the_most_negative_posts_with_ties_broken_by_id(redis, prefix):
    import random

    rng = random.Random(5)
    minute = int(time.time() // 60) - 1
    counters = Counters(redis, prefix=prefix, ttl_s=600, examples_per_minute=5)
    everything = []
    for batch in range(4):
        # Few distinct scores: ties across and within batches, at the boundary too.
        posts = [ScoredPost(f"p{batch}-{i:02d}", minute * 60_000, rng.choice([0.6, 0.8, 0.9, 0.95]), True, ["all"], ()) for i in range(rng.randint(1, 40))]
        await counters.count(posts)
        everything += posts
        # Each minute keeps the five an alert would show (ties: the smallest ids), whatever
        # the batches were.
        expected = [p.id for p in sorted(everything, key=lambda p: (-p.score, p.id))[:5]]
        assert await counters.examples("all", range(minute, minute + 1), 5) == expected


async def test_a_failing_announcement_observer_does_not_undo_or_fail_the_change(redis, prefix, caplog):
    def broken(_alert):
        raise RuntimeError("metrics exploded")

    outbox = Outbox(redis, prefix=prefix, sinks=["console"], cfg=FAST)
    store = IncidentStore(redis, prefix=prefix, ttl_s=600, outbox=outbox, on_announced=broken)
    decision = decide(
        Signal.NEGATIVE_RATE,
        Observation(100, WindowStats(0, 0, 200, 170, 0.0), WindowStats(0, 0, 600, 480, 0.0), Baseline(0.6, 40.0, "trailing", 9000)),
        None,
        rule_config(margin=0.15),
    )
    new = next_incident(None, Signal.NEGATIVE_RATE, "all", decision, 100)
    announced = alert(seq=new.seq, incident=new.id)
    assert await store.commit(None, new, announced, now_ms=int(time.time() * 1000))
    assert same(await store.get("all"), new)
    assert await outbox.pending("console") == 1
    assert f"observer of announced alert {announced.alert_id} failed" in caplog.text


async def test_the_kafka_sink_never_writes_an_alert_the_topic_already_holds(isolated):
    """A write whose acknowledgement was lost is on the topic: the outbox's retry must not
    add it a second time; an alert that is not there yet is written."""
    from aiokafka import AIOKafkaProducer

    from alerting.sinks import KafkaSink, on_topic
    from config.connections import kafka_options

    topic = isolated.topic_alerts
    await ensure_topics(isolated, [topic])
    producer = AIOKafkaProducer(**kafka_options(isolated), acks="all")
    await producer.start()
    try:
        async def publish(key: bytes, value: bytes) -> None:
            await producer.send_and_wait(topic, key=key, value=value)

        first, second = alert(), alert(action="escalated", seq=2, severity="critical")
        await publish(first.incident_id.encode(), first.to_json())  # the "lost acknowledgement" write
        sink = KafkaSink(publish, lambda a: on_topic(kafka_options(isolated), topic, a))
        await sink.send(first)
        await sink.send(second)
        await sink.send(second)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, **kafka_options(isolated), auto_offset_reset="earliest")
    await consumer.start()
    try:
        records = []
        while True:
            batch = await consumer.getmany(timeout_ms=2000)
            if not batch:
                break
            records += [r for part in batch.values() for r in part]
    finally:
        await consumer.stop()
    assert sorted(orjson.loads(r.value)["alert_id"] for r in records) == sorted([first.alert_id, second.alert_id])


async def test_a_delivery_redis_refuses_to_record_is_recorded_later_never_sent_again(redis, prefix, monkeypatch):
    """The sink took the alert, then Redis refused the acknowledgement (out of memory, a
    failover): delivery keeps trying to record it instead of leaving it queued to be sent
    again."""
    from redis.exceptions import OutOfMemoryError

    import alerting.delivery as delivery

    monkeypatch.setattr(delivery, "ACK_RETRY_S", 0.05)
    sent: list[tuple[str, str]] = []
    refusals = []

    class RefusingOutbox(Outbox):
        async def ack(self, sink, alert_id):
            if len(refusals) < 3:
                refusals.append(alert_id)
                raise OutOfMemoryError("command not allowed when used memory > 'maxmemory'")
            await super().ack(sink, alert_id)

    outbox = RefusingOutbox(redis, prefix=prefix, sinks=["slow"], cfg=FAST)
    first = alert()
    assert await outbox.enqueue(first, now_ms=int(time.time() * 1000))
    task = asyncio.create_task(Delivery(outbox, [SlowSink("slow", 0.0, sent, "A")], send_timeout_s=2, poll_s=0.05).run())
    try:
        await _until(lambda: len(refusals) == 3 and len(sent) >= 1, timeout=10)
        await asyncio.sleep(1)  # a resend would show up within this
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert sent == [("A", first.alert_id)]
    assert await outbox.is_delivered("slow", first.alert_id) and await outbox.pending("slow") == 0
