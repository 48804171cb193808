"""The worker's Prometheus metrics and the dashboard's numbers, without services."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
from prometheus_client.parser import text_string_to_metric_families

from alerting.history import baseline_at
from alerting.incidents import Incident
from alerting.rules import Baseline, Episode, Severity, Signal
from counting.counters import HourBucket
from counting.windows import Bucket
from models.scorer import ModelInfo
from stream.dashboard import (
    parse_minutes,
    parse_scope,
    reads_for_chart,
    windows_payload,
)
from stream.messages import InvalidMessage, decode, late_reason
from stream.metrics import DLQ_REASON_CLASSES, Metrics, SharedState, reason_class
from stream.pipeline import BatchResult, RawMessage
from tests.configs import rule_config

NOW = 1_760_000_000_000
OPTS = dict(kafka_timestamp_ms=NOW, now_ms=NOW, max_text_chars=20, future_tolerance_ms=300_000, retention_ms=3600_000)


def samples(metrics: Metrics) -> dict[tuple[str, tuple], float]:
    text = metrics.exposition().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def reason_of(raw: bytes) -> str:
    with pytest.raises(InvalidMessage) as exc:
        decode(raw, **OPTS)
    return str(exc.value)


@pytest.mark.parametrize(
    "raw, expected",
    [
        (b"", "empty_message"),
        (b"\xc3\x28", "invalid_encoding"),
        (b'{"id": 1, "text": "x"', "invalid_json"),
        (b"[1, 2]", "not_an_object"),
        (b'{"id": "a"}', "missing_field"),
        (b'{"text": "a"}', "missing_field"),
        (b'{"id": "a", "text": "   "}', "empty_field"),
        (b'{"id": " ", "text": "x"}', "empty_field"),
        (b'{"id": "a", "text": "' + b"x" * 21 + b'"}', "text_too_long"),
        (b'{"id": true, "text": "x"}', "invalid_field"),
        (b'{"id": "a", "text": "x", "created_at": "yesterday"}', "invalid_field"),
        (b'{"id": "a", "text": "x", "lang": 3}', "invalid_field"),
        (b'{"id": "a", "text": "x", "created_at": "2999-01-01T00:00:00Z"}', "future_event"),
        (b'{"id": "a", "text": "x", "created_at": "2000-01-01T00:00:00Z"}', "expired_event"),
    ],
)
def test_every_dead_letter_reason_folds_into_a_fixed_class(raw, expected):
    assert reason_class(reason_of(raw)) == expected


def test_late_events_and_unknown_reasons_have_their_own_classes():
    assert reason_class(late_reason(NOW - 7200_000, NOW, 3600_000)) == "late_event"
    assert reason_class("scorer exploded") == "other"
    assert set(DLQ_REASON_CLASSES) >= {"late_event", "other"}


def test_every_reason_class_is_exported_at_zero_before_any_dead_letter():
    got = samples(Metrics())
    dlq = {dict(labels)["reason"]: v for (name, labels), v in got.items() if name == "badbuzz_posts_dead_lettered_total"}
    assert dlq == {reason: 0.0 for reason in DLQ_REASON_CLASSES}


@dataclass
class FakeAlert:
    signal: str
    action: str
    severity: str


def raw(partition: int, offset: int, timestamp_ms: int | None = NOW - 2_000) -> RawMessage:
    return RawMessage(value=b"{}", timestamp_ms=timestamp_ms, topic="tweets.raw", partition=partition, offset=offset)


def test_a_batch_is_recorded_exactly():
    metrics = Metrics()
    messages = [raw(0, 10), raw(0, 11), raw(1, 5, timestamp_ms=None), raw(1, 6)]
    result = BatchResult(received=4, counted=2, duplicates=1, dead_lettered=1, event_ms=[NOW - 30_000, NOW - 90_000, NOW - 1_000], scoring_s=0.02)
    metrics.record_batch(messages, result, duration_s=0.05, now_ms=NOW)
    # Alerts are counted when the incident store queues them, whatever raised them.
    metrics.record_alert(FakeAlert("negative_rate", "opened", "warning"))
    metrics.record_dead_letter("missing field 'text'")
    got = samples(metrics)
    assert got[("badbuzz_posts_consumed_total", ())] == 4
    assert got[("badbuzz_posts_scored_total", ())] == 3
    assert got[("badbuzz_posts_counted_total", ())] == 2
    assert got[("badbuzz_posts_duplicate_total", ())] == 1
    assert got[("badbuzz_posts_dead_lettered_total", (("reason", "missing_field"),))] == 1
    assert got[("badbuzz_alerts_total", (("action", "opened"), ("severity", "warning"), ("signal", "negative_rate")))] == 1
    assert got[("badbuzz_alerts_total", (("action", "resolved"), ("severity", "warning"), ("signal", "negative_rate")))] == 0
    assert got[("badbuzz_alerts_total", (("action", "opened"), ("severity", "watch"), ("signal", "volume")))] == 0
    assert got[("badbuzz_batch_size_messages_count", ())] == 1
    assert got[("badbuzz_batch_size_messages_sum", ())] == 4
    assert got[("badbuzz_scoring_duration_seconds_sum", ())] == pytest.approx(0.02)
    assert got[("badbuzz_batch_duration_seconds_sum", ())] == pytest.approx(0.05)
    # Event latency: 30 s, 90 s and 1 s; the 1-s one lands in the 1-s bucket.
    assert got[("badbuzz_event_latency_seconds_count", ())] == 3
    assert got[("badbuzz_event_latency_seconds_sum", ())] == pytest.approx(121.0)
    assert got[("badbuzz_event_latency_seconds_bucket", (("le", "1.0"),))] == 1
    assert got[("badbuzz_event_latency_seconds_bucket", (("le", "60.0"),))] == 2
    # Ingest latency only for messages that carry a Kafka timestamp.
    assert got[("badbuzz_ingest_latency_seconds_count", ())] == 3
    assert got[("badbuzz_ingest_latency_seconds_sum", ())] == pytest.approx(6.0)
    assert (metrics.next_offset("tweets.raw", 0), metrics.next_offset("tweets.raw", 1)) == (12, 7)


def test_a_batch_without_valid_posts_observes_no_scoring_time():
    metrics = Metrics()
    metrics.record_batch([raw(0, 1)], BatchResult(received=1, dead_lettered=1), duration_s=0.01, now_ms=NOW)
    assert samples(metrics)[("badbuzz_scoring_duration_seconds_count", ())] == 0


def test_revoked_partitions_are_forgotten():
    metrics = Metrics()
    metrics.record_batch([raw(0, 1), raw(2, 9)], BatchResult(received=2), duration_s=0.0, now_ms=NOW)
    metrics.forget_partitions([("tweets.raw", 2)])
    assert (metrics.next_offset("tweets.raw", 0), metrics.next_offset("tweets.raw", 2)) == (2, None)


def test_two_apps_in_one_process_keep_separate_registries():
    first, second = Metrics(), Metrics()
    first.record_batch([raw(0, 1)], BatchResult(received=1), duration_s=0.0, now_ms=NOW)
    assert samples(first)[("badbuzz_posts_consumed_total", ())] == 1
    assert samples(second)[("badbuzz_posts_consumed_total", ())] == 0


def test_model_info():
    metrics = Metrics()
    metrics.set_model(
        ModelInfo(family="tfidf", scheme="negative_vs_rest", threshold=0.42, name="badbuzz-sentiment", version="3", uri="models:/badbuzz-sentiment@champion")
    )
    labels = dict(next(labels for (name, labels) in samples(metrics) if name == "badbuzz_model_info"))
    assert labels == {
        "name": "badbuzz-sentiment",
        "version": "3",
        "family": "tfidf",
        "scheme": "negative_vs_rest",
        "threshold": "0.42",
        "uri": "models:/badbuzz-sentiment@champion",
    }


def test_shared_state_is_rendered_and_replaced_not_accumulated():
    metrics = Metrics()
    metrics.update_shared(
        SharedState(
            redis_up=True,
            watermark_ms=NOW,
            windows={("all", 15): (200, 50), ("term:delay", 15): (0, 0)},
            baselines={"all": 0.2},
            expected_per_minute={"all": 12.5},
            incidents=[("all", "negative_rate", "warning")],
            outbox={("slack", "pending"): 2},
            lag={("tweets.raw", 0): 7, ("tweets.raw", 3): 0},
        )
    )
    got = samples(metrics)
    assert got[("badbuzz_redis_up", ())] == 1
    assert got[("badbuzz_event_watermark_timestamp_seconds", ())] == NOW / 1000
    assert got[("badbuzz_negative_rate_ratio", (("scope", "all"), ("window", "15m")))] == 0.25
    assert got[("badbuzz_window_posts", (("scope", "all"), ("window", "15m")))] == 200
    # An empty window has a volume of 0 and no rate at all.
    assert got[("badbuzz_window_posts", (("scope", "term:delay"), ("window", "15m")))] == 0
    assert ("badbuzz_negative_rate_ratio", (("scope", "term:delay"), ("window", "15m"))) not in got
    assert got[("badbuzz_baseline_negative_rate_ratio", (("scope", "all"),))] == 0.2
    assert got[("badbuzz_baseline_posts_per_minute", (("scope", "all"),))] == 12.5
    assert got[("badbuzz_open_incidents", (("scope", "all"), ("severity", "warning"), ("signal", "negative_rate")))] == 1
    assert got[("badbuzz_alert_outbox_messages", (("sink", "slack"), ("state", "pending")))] == 2
    assert got[("badbuzz_consumer_lag_messages", (("partition", "0"), ("topic", "tweets.raw")))] == 7
    assert got[("badbuzz_assigned_partitions", ())] == 2

    metrics.update_shared(SharedState(redis_up=False))
    got = samples(metrics)
    assert got[("badbuzz_redis_up", ())] == 0
    assert not any(name in ("badbuzz_open_incidents", "badbuzz_negative_rate_ratio", "badbuzz_event_watermark_timestamp_seconds") for name, _ in got)


def test_metric_names_follow_prometheus_conventions():
    metrics = Metrics()
    metrics.update_shared(SharedState(redis_up=True, watermark_ms=NOW))
    families = list(text_string_to_metric_families(metrics.exposition().decode()))
    assert families and all(f.name.startswith("badbuzz_") for f in families)
    for family in families:
        if family.type == "counter":
            assert all(s.name.endswith("_total") for s in family.samples), family.name
        if family.type == "histogram":
            assert family.name.endswith(("_seconds", "_messages")), family.name


# -- the dashboard's numbers ----------------------------------------------------------

CFG = rule_config(window_min=3, short_window_min=2, min_volume=5, baseline_hours=2, seasonal_weeks=0, baseline_min_minutes=10, margin=0.15)
HOUR = 10
END = HOUR * 60 + 30


def steady_history() -> tuple[dict[int, Bucket], dict[int, HourBucket]]:
    """Hours 8 and 9 and the first 27 minutes of hour 10: 10 posts a minute, 30% negative;
    then 8 of 10 negative in the alert window (from minute 10:28 on)."""
    minutes = {m: Bucket(10, 8 if m >= HOUR * 60 + 28 else 3) for m in range(HOUR * 60, END + 1)}
    hours = {h: HourBucket(600, 180, 60) for h in (HOUR - 2, HOUR - 1)}
    return minutes, hours


def payload(incidents=(), minutes=10):
    buckets, hours = steady_history()
    return windows_payload(
        scope="all",
        scopes=["all", "term:delay"],
        minute_buckets=buckets,
        global_minutes=buckets,
        hour_buckets=hours,
        global_hours=hours,
        end_minute=END,
        minutes=minutes,
        cfg=CFG,
        incidents=list(incidents),
        watermark_ms=END * 60_000 + 5,
        model="m v1 (tfidf)",
        now_ms=NOW,
    )


def test_points_carry_the_window_rate_and_the_rules_own_baseline():
    data = payload()
    points = {p["minute"]: p for p in data["points"]}
    assert list(points) == list(range(END - 9, END + 1))
    last = points[END]
    assert (last["posts"], last["negative"], last["window_posts"], last["window_negative"]) == (10, 8, 30, 24)
    assert last["window_rate"] == pytest.approx(0.8)
    # Every stretch of history is 30% negative at 10 posts a minute.
    assert last["baseline"] == pytest.approx(0.3)
    assert last["alert_level"] == pytest.approx(0.45)
    assert last["expected_per_minute"] == pytest.approx(10.0)
    buckets, hours = steady_history()
    for minute, point in points.items():
        assert point["baseline"] == baseline_at(minute, buckets, buckets, hours, hours, CFG).rate
    assert data["latest"]["5"] == {"minutes": 5, "posts": 50, "negative": 3 * 8 + 2 * 3, "rate": pytest.approx(30 / 50)}
    assert data["latest"]["60"]["posts"] == 310
    assert (data["baseline"], data["baseline_frozen"]) == (last["baseline"], False)
    assert data["watermark"] == "1970-01-01T10:30:00Z" and data["end"] == "1970-01-01T10:31:00Z"


def test_the_reads_cover_every_points_window_and_baseline_history():
    reads = reads_for_chart(END, 10, CFG)
    assert reads.minutes == range(END - 59, END + 1)  # the 60-minute card reaches back furthest here
    assert reads.hours == (HOUR - 2, HOUR - 1)
    reads = reads_for_chart(END, 180, CFG)
    assert reads.minutes.start == (END - 179 - 2) // 60 * 60
    assert reads.hours == tuple(range((END - 179 - 2) // 60 - 2, HOUR))


def test_an_open_rate_incident_freezes_the_baseline_and_says_when_it_closes():
    rate = Incident("rate-all-1", Signal.NEGATIVE_RATE, "all", 1, Episode(Severity.WARNING, Baseline(0.3, 10.0, "trailing", 1480), END - 2))
    volume = Incident("volume-all-1", Signal.VOLUME, "all", 2, Episode(Severity.WATCH, Baseline(0.3, 10.0, "trailing", 1480), END - 8, END - 4))
    data = payload([rate, volume])
    assert data["baseline_frozen"] and data["baseline"] == 0.3 and data["alert_level"] == pytest.approx(0.45)
    views = {v["signal"]: v for v in data["incidents"]}
    assert views["negative_rate"] == {
        "id": "rate-all-1",
        "signal": "negative_rate",
        "severity": "warning",
        "open": True,
        "opened": "1970-01-01T10:28:00Z",
        "opened_minute": END - 2,
        "resolved": None,
        "resolved_minute": None,
        "baseline_rate": 0.3,
        "baseline_per_minute": 10.0,
        "closes_below": pytest.approx(0.3 + 0.15 * 0.5),
    }
    assert views["volume"]["open"] is False and views["volume"]["resolved"] == "1970-01-01T10:26:00Z"
    assert views["volume"]["closes_below"] == pytest.approx(10.0 * (1 + (3.0 - 1) * 0.5))


def test_empty_minutes_have_zero_posts_and_no_rate():
    data = windows_payload(
        scope="all",
        scopes=["all"],
        minute_buckets={},
        global_minutes={},
        hour_buckets={},
        global_hours={},
        end_minute=END,
        minutes=10,
        cfg=CFG,
        incidents=[],
        watermark_ms=None,
        model="m",
        now_ms=NOW,
    )
    assert all(p["posts"] == 0 and p["window_rate"] is None and p["baseline"] is None for p in data["points"])
    assert data["latest"]["15"]["rate"] is None and data["baseline"] is None and data["incidents"] == []


def test_query_parameters_are_checked_with_plain_messages():
    assert parse_minutes(None, default=180, retention_min=2880) == 180
    assert parse_minutes("60", default=180, retention_min=2880) == 60
    with pytest.raises(ValueError) as exc:
        parse_minutes("abc", default=180, retention_min=2880)
    assert str(exc.value) == "minutes must be a whole number from 10 to 2880, got 'abc'"
    with pytest.raises(ValueError, match="from 10 to 120, got '500'"):
        parse_minutes("500", default=180, retention_min=120)
    assert parse_scope(None, ["all", "term:delay"]) == "all"
    assert parse_scope("term:delay", ["all", "term:delay"]) == "term:delay"
    with pytest.raises(ValueError) as exc:
        parse_scope("term:nope", ["all", "term:delay"])
    assert str(exc.value) == "unknown scope 'term:nope'; known scopes: all, term:delay"
