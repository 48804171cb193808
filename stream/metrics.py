"""The worker's Prometheus metrics, served on its web port at ``/metrics``.

Two kinds: what this worker process did (counters and histograms, recorded by the agent
after each batch; sum them over workers, and the consumer lag of its partitions), and the
shared state (window rates, baselines, open incidents, alert outbox; identical on every
worker, so take ``max`` over workers, not ``sum``). The shared state is computed by one
worker at a time every few seconds and cached in Redis (``stream.web``): a scrape reads
that one key whatever the number of scopes. Each ``Metrics`` owns its own
``CollectorRegistry``: two apps in one process (tests) never clash.

Label values are bounded: scopes come from the configured watch terms, dead-letter reasons
are folded into a fixed set of classes (the full reason is in the DLQ header), errors into
those of ``stream.retry``."""
from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    Info,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric

from alerting.alert import Alert
from alerting.rules import Action, Severity, Signal
from models.scorer import ModelInfo
from stream.pipeline import BatchResult, RawMessage
from stream.retry import ERROR_CLASSES, UNEXPECTED

CONTENT_TYPE = CONTENT_TYPE_LATEST
# The per-series "_created" timestamps only double the output; rates need none of them.
disable_created_metrics()

# (class, pattern matched at the start of the reason) in match order; the reasons
# themselves are written in stream.messages.
_REASON_CLASSES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern))
    for name, pattern in (
        ("empty_message", r"empty message"),
        ("invalid_encoding", r"not valid UTF-8"),
        ("invalid_json", r"invalid JSON"),
        ("not_an_object", r"expected a JSON object"),
        ("missing_field", r"missing field"),
        ("late_event", r"late event"),
        ("future_event", r"event time .* is in the future"),
        ("expired_event", r"event time .* is older than the counter retention"),
        ("text_too_long", r"field 'text' has \d+ characters"),
        ("empty_field", r"field '[^']*' is empty"),
        ("invalid_field", r"field '"),
    )
)
DLQ_REASON_CLASSES = tuple(name for name, _ in _REASON_CLASSES) + ("other",)
ALERT_ACTIONS = tuple(a.value for a in Action)
SIGNALS = tuple(s.value for s in Signal)
SEVERITIES = tuple(s.value for s in Severity)
HANDLERS = ("timer", "feedback")

_SECONDS_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Event-time latency spans seconds (live feeds) to hours (backfills, replays).
_SECONDS_SLOW = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)
_BATCH_SIZES = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500)


def reason_class(reason: str) -> str:
    """Fold a dead-letter reason into one of ``DLQ_REASON_CLASSES``."""
    for name, pattern in _REASON_CLASSES:
        if pattern.match(reason):
            return name
    return "other"


@dataclass(frozen=True)
class SharedState:
    """What the scrape read from Redis and the consumer; ``None`` fields were unreadable."""

    redis_up: bool
    watermark_ms: int | None = None
    # (scope, window minutes) -> (posts, negatives)
    windows: Mapping[tuple[str, int], tuple[int, int]] = field(default_factory=dict)
    baselines: Mapping[str, float] = field(default_factory=dict)
    expected_per_minute: Mapping[str, float] = field(default_factory=dict)
    # (scope, signal, severity) of each open incident
    incidents: Sequence[tuple[str, str, str]] = ()
    # (sink, state) -> messages in the alert outbox
    outbox: Mapping[tuple[str, str], int] = field(default_factory=dict)
    # (topic, partition) -> messages not yet processed by this worker
    lag: Mapping[tuple[str, int], int] = field(default_factory=dict)
    # How old the cached shared figures were when scraped; None: none cached yet.
    age_s: float | None = None

    def to_cache(self, *, computed_ms: int) -> bytes:
        """The shared part, as the worker that computed it caches it for all of them."""
        return json.dumps({
            "computed_ms": computed_ms,
            "watermark_ms": self.watermark_ms,
            "windows": [[scope, minutes, total, negative] for (scope, minutes), (total, negative) in self.windows.items()],
            "baselines": self.baselines,
            "expected_per_minute": self.expected_per_minute,
            "incidents": [list(i) for i in self.incidents],
            "outbox": [[sink, state, n] for (sink, state), n in self.outbox.items()],
        }).encode()

    @classmethod
    def from_cache(cls, raw: bytes, *, lag: Mapping[tuple[str, int], int], now_ms: int) -> SharedState:
        d = json.loads(raw)
        return cls(
            redis_up=True,
            watermark_ms=d["watermark_ms"],
            windows={(scope, minutes): (total, negative) for scope, minutes, total, negative in d["windows"]},
            baselines=d["baselines"],
            expected_per_minute=d["expected_per_minute"],
            incidents=[tuple(i) for i in d["incidents"]],
            outbox={(sink, state): n for sink, state, n in d["outbox"]},
            lag=lag,
            age_s=max(0.0, (now_ms - d["computed_ms"]) / 1000),
        )


class _SharedStateCollector:
    """Renders the latest ``SharedState``: label sets come and go with the state (a
    resolved incident disappears instead of lingering as a stale series)."""

    def __init__(self) -> None:
        self.state = SharedState(redis_up=False)

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        s = self.state
        up = GaugeMetricFamily("badbuzz_redis_up", "1 when the last scrape could read Redis, else 0")
        up.add_metric([], 1.0 if s.redis_up else 0.0)
        yield up
        if s.age_s is not None:
            yield GaugeMetricFamily(
                "badbuzz_shared_metrics_age_seconds", "How long ago the shared figures below were computed (by one of the workers)", value=s.age_s
            )
        if s.watermark_ms is not None:
            yield GaugeMetricFamily(
                "badbuzz_event_watermark_timestamp_seconds",
                "Event time of the newest counted post (Unix seconds)",
                value=s.watermark_ms / 1000,
            )
        rate = GaugeMetricFamily(
            "badbuzz_negative_rate_ratio", "Share of posts labelled negative in the trailing event-time window", labels=["scope", "window"]
        )
        volume = GaugeMetricFamily("badbuzz_window_posts", "Posts counted in the trailing event-time window", labels=["scope", "window"])
        for (scope, minutes), (total, negative) in sorted(s.windows.items()):
            labels = [scope, f"{minutes}m"]
            volume.add_metric(labels, total)
            # An empty window has no rate; 0 would read as "all is calm".
            if total:
                rate.add_metric(labels, negative / total)
        yield rate
        yield volume
        baseline = GaugeMetricFamily(
            "badbuzz_baseline_negative_rate_ratio", "The escalation rule's current baseline negative rate (floor applied)", labels=["scope"]
        )
        for scope, value in sorted(s.baselines.items()):
            baseline.add_metric([scope], value)
        yield baseline
        expected = GaugeMetricFamily("badbuzz_baseline_posts_per_minute", "The escalation rule's current baseline volume", labels=["scope"])
        for scope, value in sorted(s.expected_per_minute.items()):
            expected.add_metric([scope], value)
        yield expected
        incidents = GaugeMetricFamily("badbuzz_open_incidents", "Open incidents (1 per open incident)", labels=["scope", "signal", "severity"])
        for scope, signal, severity in sorted(s.incidents):
            incidents.add_metric([scope, signal, severity], 1.0)
        yield incidents
        outbox = GaugeMetricFamily("badbuzz_alert_outbox_messages", "Alert deliveries in the outbox by sink and state", labels=["sink", "state"])
        for (sink, state), n in sorted(s.outbox.items()):
            outbox.add_metric([sink, state], n)
        yield outbox
        lag = GaugeMetricFamily(
            "badbuzz_consumer_lag_messages", "Messages in a partition assigned to this worker that it has not processed yet", labels=["topic", "partition"]
        )
        for (topic, partition), n in sorted(s.lag.items()):
            lag.add_metric([topic, str(partition)], n)
        yield lag
        yield GaugeMetricFamily("badbuzz_assigned_partitions", "Partitions of the raw topic assigned to this worker", value=len(s.lag))


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.consumed = Counter("badbuzz_posts_consumed", "Messages taken off the raw topic", registry=r)
        self.scored = Counter("badbuzz_posts_scored", "Valid posts scored by the model", registry=r)
        self.counted = Counter("badbuzz_posts_counted", "Posts counted for the first time", registry=r)
        self.duplicates = Counter("badbuzz_posts_duplicate", "Valid posts already counted before (redelivery or repeated id)", registry=r)
        self.dead_lettered = Counter("badbuzz_posts_dead_lettered", "Messages sent to the dead-letter topic, by reason class", ["reason"], registry=r)
        self.alerts = Counter("badbuzz_alerts", "Alerts this worker announced", ["signal", "action", "severity"], registry=r)
        self.redis_errors = Counter("badbuzz_redis_errors", "Failed Redis operations (batches are retried)", ["operation"], registry=r)
        self.batch_retries = Counter("badbuzz_batch_retries", "Batches tried again after a transient failure, by error class", ["error"], registry=r)
        self.handler_errors = Counter(
            "badbuzz_handler_errors",
            "Failures the timer and the feedback agent caught and carried on after (transient ones are retried), by error class",
            ["handler", "error"],
            registry=r,
        )
        self.batch_size = Histogram("badbuzz_batch_size_messages", "Messages per micro-batch", buckets=_BATCH_SIZES, registry=r)
        self.batch_duration = Histogram(
            "badbuzz_batch_duration_seconds", "Time to decode, score, count and escalate one batch", buckets=_SECONDS_FAST, registry=r
        )
        self.scoring_duration = Histogram("badbuzz_scoring_duration_seconds", "Model time per batch", buckets=_SECONDS_FAST, registry=r)
        self.event_latency = Histogram(
            "badbuzz_event_latency_seconds",
            "From the post's event time to its batch being counted (replays simulate event times)",
            buckets=_SECONDS_SLOW,
            registry=r,
        )
        self.ingest_latency = Histogram(
            "badbuzz_ingest_latency_seconds",
            "From the message's Kafka timestamp to its batch being handled",
            buckets=_SECONDS_SLOW,
            registry=r,
        )
        self.model = Info("badbuzz_model", "The model this worker serves", registry=r)
        self.shared = _SharedStateCollector()
        r.register(self.shared)
        for reason in DLQ_REASON_CLASSES:
            self.dead_lettered.labels(reason)
        for error in ERROR_CLASSES:
            if error != UNEXPECTED:
                self.batch_retries.labels(error)
            for handler in HANDLERS:
                self.handler_errors.labels(handler, error)
        for signal in SIGNALS:
            for action in ALERT_ACTIONS:
                for severity in SEVERITIES:
                    self.alerts.labels(signal, action, severity)
        self._next_offsets: dict[tuple[str, int], int] = {}

    def set_model(self, info: ModelInfo) -> None:
        self.model.info(
            {
                "name": info.name,
                "version": info.version,
                "family": info.family,
                "scheme": info.scheme,
                "threshold": f"{info.threshold:g}",
                "uri": info.uri,
            }
        )

    def record_dead_letter(self, reason: str) -> None:
        self.dead_lettered.labels(reason_class(reason)).inc()

    def record_batch(self, messages: Sequence[RawMessage], result: BatchResult, *, duration_s: float, now_ms: int | None = None) -> None:
        """After a batch is counted (``duration_s`` including any Redis retries)."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        self.consumed.inc(len(messages))
        self.scored.inc(len(result.event_ms))
        self.counted.inc(result.counted)
        self.duplicates.inc(len(result.event_ms) - result.counted)
        self.batch_size.observe(len(messages))
        self.batch_duration.observe(duration_s)
        if result.event_ms:
            self.scoring_duration.observe(result.scoring_s)
        for ms in result.event_ms:
            self.event_latency.observe(max(0.0, (now_ms - ms) / 1000))
        for message in messages:
            if message.timestamp_ms:
                self.ingest_latency.observe(max(0.0, (now_ms - message.timestamp_ms) / 1000))
            key = (message.topic, message.partition)
            self._next_offsets[key] = max(self._next_offsets.get(key, 0), message.offset + 1)

    def record_alert(self, alert: Alert) -> None:
        """Every alert this worker queued, whatever raised it (the incident store calls this)."""
        self.alerts.labels(alert.signal, alert.action, alert.severity).inc()

    def next_offset(self, topic: str, partition: int) -> int | None:
        """The offset after the last one this worker processed in the partition, or None."""
        return self._next_offsets.get((topic, partition))

    def forget_partitions(self, partitions: Iterable[tuple[str, int]]) -> None:
        """On revocation: another worker may move these partitions on meanwhile."""
        for key in partitions:
            self._next_offsets.pop(tuple(key), None)

    def update_shared(self, state: SharedState) -> None:
        self.shared.state = state

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
