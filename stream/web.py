"""The worker's own web pages, on Faust's web server (``BADBUZZ_WEB_HOST``:``BADBUZZ_WEB_PORT``):

- ``/metrics``: Prometheus exposition (``stream.metrics``): this worker's own figures, and
  the shared ones one worker computes every ``SHARED_METRICS_PERIOD_S`` for all (``SharedMetrics``);
- ``/dashboard``: the live page for people (``dashboard.html``, no build step, no CDN);
- ``/api/windows?scope=all&minutes=180``: the JSON the page draws;
- ``/healthz``: the process answers (a liveness probe);
- ``/ready``: this worker holds partitions of ``BADBUZZ_TOPIC_RAW``, and Kafka and Redis
  answer (a readiness probe); 503 with the reason otherwise.

Every worker serves the same shared numbers (they come from Redis), so any one of them
can be put behind a load balancer."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

import faust
from aiokafka.errors import KafkaError
from faust.exceptions import ConsumerNotStarted
from redis.exceptions import RedisError

from alerting.feedback import MODEL_SCOPE
from alerting.history import baseline_at, reads_for
from alerting.outbox import Outbox
from alerting.rules import Signal
from alerting.runtime import AlertingRuntime
from config.connections import shared_keyspace
from config.settings import Settings
from counting.windows import (
    GLOBAL_SCOPE,
    SLIDING_WINDOWS_MIN,
    aggregate,
    minute_of,
    window_minutes,
)
from models.scorer import ModelInfo
from stream.dashboard import SIGNALS, ChartCache, build_chart, dashboard_page, parse_minutes, parse_scope
from stream.drift_monitor import DRIFT_SCOPE
from stream.metrics import CONTENT_TYPE, Metrics, SharedState

log = logging.getLogger(__name__)

DEFAULT_MINUTES = 180
_LAG_TIMEOUT_S = 5.0
# Below the probes' own timeout, so a hung broker or Redis reads as "not ready", not as a
# probe that timed out.
PROBE_TIMEOUT_S = 3.0
# How often one of the workers computes the shared figures of /metrics (SharedMetrics).
SHARED_METRICS_PERIOD_S = 5.0




class SharedReader:
    """Reads what every worker shares (Redis) for the dashboard and the metrics, through
    the worker's alerting runtime (same Redis client, key layout and rule settings).

    Charts share the consumer's event loop: ``stream.dashboard.ChartCache`` builds one at
    a time, off the loop, shared by every request for it."""

    def __init__(self, alerting: AlertingRuntime, *, clock=time.monotonic):
        self.alerting = alerting
        self.cfg = alerting.cfg
        self._charts = ChartCache(self._build_chart, clock=clock)

    @property
    def scopes(self) -> list[str]:
        """The watch terms' scopes as this worker last read them (they change at run time)."""
        return self.alerting.scopes

    async def windows(self, scope: str, minutes: int, model: str) -> dict:
        return await self._charts.get(scope, minutes, model)

    async def end_minute(self) -> tuple[int, int | None]:
        """The newest counted event's minute (the current minute before any post)."""
        watermark = await self.alerting.counters.watermark_ms()
        return minute_of(watermark or int(time.time() * 1000)), watermark or None

    async def _build_chart(self, scope: str, minutes: int, model: str) -> dict:
        async def latest_incidents(_end: int) -> list:
            found = await self.alerting.incidents.get_many([(signal, scope) for signal in SIGNALS])
            return [incident for incident in found.values() if incident is not None]

        return await build_chart(
            self.alerting.counters, scope=scope, scopes=self.scopes, minutes=minutes, cfg=self.cfg, model=model, incidents_for=latest_incidents
        )

    async def shared_state(self, lag: dict[tuple[str, int], int] | None = None) -> SharedState:
        end, watermark = await self.end_minute()
        reads = reads_for(end, self.cfg)
        first = min(reads.minutes.start, end - max(SLIDING_WINDOWS_MIN) + 1)
        hours = [*reads.hours, *(h for week in reads.seasonal for h in week)]
        snapshot = await self.alerting.counters.snapshot(self.scopes, range(first, end + 1), hours)
        global_minutes, global_hours = snapshot[GLOBAL_SCOPE]
        windows: dict[tuple[str, int], tuple[int, int]] = {}
        baselines: dict[str, float] = {}
        expected: dict[str, float] = {}
        for scope, (minutes, hour_buckets) in snapshot.items():
            for length in SLIDING_WINDOWS_MIN:
                stats = aggregate(minutes, window_minutes(end, length))
                windows[(scope, length)] = (stats.total, stats.negative)
            baseline = baseline_at(end, minutes, global_minutes, hour_buckets, global_hours, self.cfg)
            if baseline.rate is not None:
                baselines[scope] = baseline.rate
            if baseline.per_minute is not None:
                expected[scope] = baseline.per_minute
        keys = [(signal, scope) for scope in self.scopes for signal in SIGNALS]
        found = await self.alerting.incidents.get_many([*keys, (Signal.MODEL_QUALITY, MODEL_SCOPE), (Signal.MODEL_QUALITY, DRIFT_SCOPE)])
        incidents = [(i.scope, i.signal.value, i.severity.value) for i in found.values() if i is not None and i.is_open]
        return SharedState(
            redis_up=True,
            watermark_ms=watermark,
            windows=windows,
            baselines=baselines,
            expected_per_minute=expected,
            incidents=incidents,
            outbox=await outbox_lengths(self.alerting.outbox),
            lag=lag or {},
        )


class SharedMetrics:
    """The shared figures of ``/metrics``, computed by one worker per period and read by
    every worker's scrape as one key: scrapes cost one Redis read however many scopes
    and workers there are. ``{P}:metrics:shared`` holds the figures (JSON, with when
    they were computed) and expires after ``STALE_S``, so a worker fleet that stopped
    computing shows no figures rather than old ones as current; ``{P}:metrics:lease`` is
    taken for a period by the worker that computes."""

    STALE_S = 60

    def __init__(self, reader: SharedReader, *, prefix: str, period_s: float = SHARED_METRICS_PERIOD_S, clock=time.time):
        self.reader = reader
        self.redis = reader.alerting.redis
        base = shared_keyspace(prefix)
        self.key = f"{base}:metrics:shared"
        self.lease_key = f"{base}:metrics:lease"
        # A little under the period, so the worker holding it can take it again at its next turn.
        self.lease_ms = int(period_s * 900)
        self.clock = clock

    async def refresh(self) -> bool:
        """Compute and cache the figures if no worker did this period; whether this one did."""
        if not await self.redis.set(self.lease_key, b"1", nx=True, px=self.lease_ms):
            return False
        computed_ms = int(self.clock() * 1000)
        state = await self.reader.shared_state()
        await self.redis.set(self.key, state.to_cache(computed_ms=computed_ms), ex=self.STALE_S)
        return True

    async def read(self, lag: dict[tuple[str, int], int]) -> SharedState:
        """What a scrape shows: the cached figures and this worker's own lag."""
        raw = await self.redis.get(self.key)
        if raw is None:
            return SharedState(redis_up=True, lag=lag)
        return SharedState.from_cache(raw, lag=lag, now_ms=int(self.clock() * 1000))


async def outbox_lengths(outbox: Outbox) -> dict[tuple[str, str], int]:
    """Per sink: alerts waiting in the outbox (``pending``), and those of them that
    failed at least once and are being retried (``failed``)."""
    pipe = outbox.redis.pipeline(transaction=False)
    for sink in outbox.sinks:
        pipe.zcard(outbox.keys.queue(sink))
        pipe.hlen(outbox.keys.attempts(sink))
    counts = iter(await pipe.execute())
    out = {}
    for sink in outbox.sinks:
        out[(sink, "pending")] = int(next(counts))
        out[(sink, "failed")] = int(next(counts))
    return out


async def consumer_lag(app: faust.App, topic: str, metrics: Metrics) -> dict[tuple[str, int], int]:
    """Per assigned partition of ``topic``: the log end offset minus the next offset this
    worker will process (its position until it processed something there)."""
    try:
        consumer = app.consumer
        partitions = sorted(tp for tp in consumer.assignment() if tp.topic == topic)
        if not partitions:
            return {}
        ends = await asyncio.wait_for(consumer.highwaters(*partitions), _LAG_TIMEOUT_S)
        lag = {}
        for tp in partitions:
            done = metrics.next_offset(tp.topic, tp.partition)
            if done is None:
                done = await asyncio.wait_for(consumer.position(tp), _LAG_TIMEOUT_S)
            if ends.get(tp) is not None and done is not None:
                lag[(tp.topic, tp.partition)] = max(0, ends[tp] - done)
        return lag
    except (TimeoutError, ConsumerNotStarted, KafkaError) as exc:
        log.debug("consumer lag unavailable: %s", exc)
        return {}


def readiness(topic: str, partitions: Sequence[int] | None, *, kafka_error: str | None = None, redis_error: str | None = None) -> tuple[int, dict]:
    """(HTTP status, JSON body) of ``/ready`` from what the probe found: the partitions of
    ``topic`` this worker holds (None: the consumer could not say), and why Kafka or Redis
    did not answer. One reason, the first that blocks the worker from counting posts."""
    if kafka_error is not None or partitions is None:
        reason = f"Kafka unreachable: {kafka_error or 'the consumer has not started'}"
    elif redis_error is not None:
        reason = f"Redis unreachable: {redis_error}"
    elif not partitions:
        reason = f"no partition of {topic} assigned to this worker"
    else:
        return 200, {"ready": True, "partitions": sorted(partitions)}
    return 503, {"ready": False, "reason": reason}


def _one_line(exc: BaseException) -> str:
    text, name = " ".join(str(exc).split()), type(exc).__name__
    # Kafka's errors already start with their class name.
    return text if text.startswith(name) else f"{name}: {text}" if text else name


async def assigned_partitions(app: faust.App, topic: str) -> tuple[list[int] | None, str | None]:
    """The partitions of ``topic`` this worker holds, after the broker answered for them
    (their end offsets); or None and why not."""
    try:
        consumer = app.consumer
        assigned = sorted(tp for tp in consumer.assignment() if tp.topic == topic)
        if assigned:
            await asyncio.wait_for(consumer.highwaters(*assigned), PROBE_TIMEOUT_S)
        return [tp.partition for tp in assigned], None
    except (TimeoutError, ConsumerNotStarted, KafkaError) as exc:
        return None, _one_line(exc)


async def redis_problem(redis) -> str | None:
    try:
        await asyncio.wait_for(redis.ping(), PROBE_TIMEOUT_S)
    except (TimeoutError, RedisError, OSError) as exc:
        return _one_line(exc)
    return None


def register(app: faust.App, settings: Settings, metrics: Metrics, alerting: AlertingRuntime, model_info: Callable[[], ModelInfo]) -> None:
    reader = SharedReader(alerting)
    shared = SharedMetrics(reader, prefix=settings.redis_prefix)
    retention_min = settings.counter_ttl_s // 60

    async def read_redis(operation):
        try:
            return await operation
        except (RedisError, OSError) as exc:
            metrics.redis_errors.labels("read").inc()
            log.warning("Redis unavailable for the web views: %s", exc)
            return None

    def query(request) -> tuple[str, int]:
        return (
            parse_scope(request.query.get("scope"), reader.scopes),
            parse_minutes(request.query.get("minutes"), default=DEFAULT_MINUTES, retention_min=retention_min),
        )

    @app.task
    async def compute_shared_metrics() -> None:
        while True:
            try:
                await shared.refresh()
            except (RedisError, OSError) as exc:
                metrics.redis_errors.labels("read").inc()
                log.warning("shared metrics not computed this period: %s", exc)
            except Exception:
                log.exception("shared metrics not computed this period")
            await asyncio.sleep(SHARED_METRICS_PERIOD_S)

    @app.page("/metrics", name="badbuzz-metrics")
    async def metrics_view(self, request):
        lag = await consumer_lag(app, settings.topic_raw, metrics)
        state = await read_redis(shared.read(lag))
        metrics.update_shared(state or SharedState(redis_up=False, lag=lag))
        return self.bytes(metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})

    @app.page("/healthz", name="badbuzz-healthz")
    async def healthz_view(self, request):
        return self.text("ok")

    @app.page("/ready", name="badbuzz-ready")
    async def ready_view(self, request):
        (partitions, kafka_error), redis_error = await asyncio.gather(
            assigned_partitions(app, settings.topic_raw), redis_problem(alerting.redis)
        )
        status, body = readiness(settings.topic_raw, partitions, kafka_error=kafka_error, redis_error=redis_error)
        return self.json(body, status=status)

    @app.page("/api/windows", name="badbuzz-windows")
    async def windows_view(self, request):
        try:
            scope, minutes = query(request)
        except ValueError as exc:
            return self.json({"error": str(exc)}, status=400)
        payload = await read_redis(reader.windows(scope, minutes, model_info().display))
        if payload is None:
            return self.json({"error": "Redis is unreachable; the worker retries"}, status=503)
        return self.json(payload)

    @app.page("/dashboard", name="badbuzz-dashboard")
    async def dashboard_view(self, request):
        try:
            scope, minutes = query(request)
        except ValueError as exc:
            return self.text(f"{exc}\n", status=400)
        payload = await read_redis(reader.windows(scope, minutes, model_info().display))
        page = dashboard_page(scope=scope, minutes=minutes, refresh_s=settings.dashboard_refresh_s, initial=payload)
        return self.html(page)

    @app.on_partitions_revoked.connect
    async def forget_revoked(sender, revoked, **kwargs) -> None:
        metrics.forget_partitions((tp.topic, tp.partition) for tp in revoked)
