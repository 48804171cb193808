"""The worker's drift watch: live scores and words against the served model's training
reference (``models.drift``), exported as metrics and raised as a model-quality alert.

On the batch path ``observe`` only bins the scores and keeps the preprocessed texts. Every
``BADBUZZ_DRIFT_CHECK_S`` seconds, off the event loop, the texts are tokenised against the
reference vocabulary and everything is added to per-minute buckets in Redis (shared by all
workers, per model version). The check then reads the trailing ``BADBUZZ_DRIFT_WINDOW_MIN``
minutes of the served version: with at least ``BADBUZZ_DRIFT_MIN_POSTS`` posts, a score PSI
of ``BADBUZZ_DRIFT_PSI_ALERT`` or an out-of-vocabulary rate of ``BADBUZZ_DRIFT_OOV_ALERT``
opens a ``model_quality`` incident on scope ``drift`` (critical at twice either threshold),
announced through the alert outbox like every other alert; it resolves once both fall
below ``BADBUZZ_ALERT_RESOLVE_FRACTION`` of their thresholds.

Key layout (``P`` is the Redis prefix as a hash tag, ``{prefix}``, so on Redis Cluster all of it shares one slot; minutes and hours of wall-clock time):

``P:drift:<version>:<minute>`` (hash: ``n``, ``tok``, ``oov``, ``b0``..``b9``),
``P:drift:<version>:<minute>:new`` (out-of-vocabulary token counts),
``P:drift:h:<hour>`` (the hour's last and highest PSI and OOV rate, for reports),
``P:drift:alerts`` (drift incidents by opening time, for the retraining policy)."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, Gauge
from redis.exceptions import RedisError

from alerting.alert import Alert
from alerting.incidents import IncidentStore, model_quality_alert, next_incident
from alerting.rules import NO_BASELINE, Action, Assessment, Decision, Episode, Severity, Signal, transition
from config.connections import shared_keyspace, transaction
from config.settings import Settings
from counting.windows import MINUTE_MS
from models.drift import (
    BINS,
    DriftReference,
    DriftStatus,
    VocabularyDrift,
    assess,
    bin_counts,
    read_reference,
    token_counts,
    vocabulary_drift,
)
from models.scorer import ModelInfo
from stream.pipeline import ScoredBatch

log = logging.getLogger(__name__)

DRIFT_SCOPE = "drift"
NEW_TERMS = 8
NEW_TERM_MIN_COUNT = 3
# Texts kept between two flushes; beyond it the scores still count, the words are sampled out.
MAX_PENDING_TEXTS = 50_000
# Out-of-vocabulary tokens stored per flush: the frequent ones are what the alert names.
MAX_NEW_TERMS_PER_FLUSH = 200
SUMMARY_TTL_S = 35 * 24 * 3600

_MAX_FIELDS = """
for i = 1, #ARGV, 2 do
  local current = redis.call('HGET', KEYS[1], ARGV[i])
  if not current or tonumber(ARGV[i + 1]) > tonumber(current) then redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
return 1
"""


@dataclass(frozen=True)
class DriftThresholds:
    psi: float
    oov: float
    resolve_fraction: float
    cooldown_min: int

    @classmethod
    def from_settings(cls, settings: Settings) -> DriftThresholds:
        return cls(
            psi=settings.drift_psi_alert,
            oov=settings.drift_oov_alert,
            resolve_fraction=settings.alert_resolve_fraction,
            cooldown_min=settings.alert_cooldown_min,
        )


def severity_of(status: DriftStatus, th: DriftThresholds) -> Severity | None:
    psi, oov = status.psi or 0.0, status.oov_rate or 0.0
    if psi >= 2 * th.psi or oov >= min(1.0, 2 * th.oov):
        return Severity.CRITICAL
    if psi >= th.psi or oov >= th.oov:
        return Severity.WARNING
    return None


def decide_drift(status: DriftStatus, episode: Episode | None, minute: int, th: DriftThresholds) -> Decision | None:
    """Open, escalate, reopen or resolve the drift incident (None: nothing to announce).
    A window with too few posts to judge changes nothing."""
    if status.psi is None and status.oov_rate is None:
        return None
    severity = severity_of(status, th)
    clear = (status.psi or 0.0) < th.psi * th.resolve_fraction and (status.oov_rate or 0.0) < th.oov * th.resolve_fraction
    assessment = Assessment(severity is not None, clear, severity, 1.0, status.psi or 0.0)
    return transition(episode, minute, th.cooldown_min, NO_BASELINE, lambda _: assessment)


def version_key(info: ModelInfo) -> str:
    """The Redis key part naming a model: its registry version, else its location."""
    if info.version:
        return info.version
    return "path-" + "".join(c if c.isalnum() else "-" for c in (info.bundle_dir or info.uri))[-40:]


@dataclass(frozen=True)
class WindowTotals:
    score_counts: tuple[int, ...]
    tokens: int
    oov: int
    new_terms: tuple[tuple[str, int], ...]


class DriftStore:
    def __init__(self, redis: aioredis.Redis, *, prefix: str, window_min: int, bins: int = BINS):
        self.redis = redis
        self.prefix = shared_keyspace(prefix)
        self.window_min = window_min
        self.bins = bins
        self._max = redis.register_script(_MAX_FIELDS)

    def _key(self, version: str, minute: int) -> str:
        return f"{self.prefix}:drift:{version}:{minute}"

    @property
    def alerts_key(self) -> str:
        return f"{self.prefix}:drift:alerts"

    def summary_key(self, hour: int) -> str:
        return f"{self.prefix}:drift:h:{hour}"

    async def add(self, version: str, minute: int, score_counts: np.ndarray, *, tokens: int, oov: int, new_terms: dict[str, int]) -> None:
        key = self._key(version, minute)
        ttl = (self.window_min + 10) * 60
        pipe = await transaction(self.redis)
        pipe.hincrby(key, "n", int(score_counts.sum()))
        pipe.hincrby(key, "tok", tokens)
        pipe.hincrby(key, "oov", oov)
        for i, n in enumerate(score_counts):
            if n:
                pipe.hincrby(key, f"b{i}", int(n))
        pipe.expire(key, ttl)
        if new_terms:
            for term, n in new_terms.items():
                pipe.zincrby(f"{key}:new", n, term)
            pipe.expire(f"{key}:new", ttl)
        await pipe.execute()

    async def window(self, version: str, end_minute: int) -> WindowTotals:
        minutes = range(end_minute - self.window_min + 1, end_minute + 1)
        pipe = self.redis.pipeline(transaction=False)
        for minute in minutes:
            pipe.hgetall(self._key(version, minute))
        rows = await pipe.execute()
        counts = np.zeros(self.bins, dtype=np.int64)
        tokens = oov = 0
        for row in rows:
            values = {k.decode(): int(v) for k, v in row.items()}
            tokens += values.get("tok", 0)
            oov += values.get("oov", 0)
            for i in range(self.bins):
                counts[i] += values.get(f"b{i}", 0)
        merged = await self.redis.zunion([f"{self._key(version, m)}:new" for m in minutes], withscores=True)
        ranked = sorted(((t.decode(), int(n)) for t, n in merged), key=lambda tn: (-tn[1], tn[0]))
        return WindowTotals(tuple(int(x) for x in counts), tokens, oov, tuple(ranked))

    async def record_alert(self, incident_id: str, opened_ms: int) -> None:
        pipe = await transaction(self.redis)
        pipe.zadd(self.alerts_key, {incident_id: opened_ms}, nx=True)
        pipe.zremrangebyscore(self.alerts_key, "-inf", opened_ms - SUMMARY_TTL_S * 1000)
        await pipe.execute()

    async def alerts_since(self, since_ms: int) -> list[str]:
        return [i.decode() for i in await self.redis.zrangebyscore(self.alerts_key, since_ms, "+inf")]

    async def record_summary(self, now_ms: int, version: str, status: DriftStatus) -> None:
        key = self.summary_key(now_ms // 3_600_000)
        latest = {"version": version, "posts": status.posts, "checked_at": now_ms}
        if status.psi is not None:
            latest["psi"] = round(status.psi, 6)
        if status.oov_rate is not None:
            latest["oov_rate"] = round(status.oov_rate, 6)
        await self.redis.hset(key, mapping=latest)
        peaks = [("psi_max", latest.get("psi")), ("oov_rate_max", latest.get("oov_rate"))]
        args = [x for name, value in peaks if value is not None for x in (name, value)]
        if args:
            await self._max(keys=[key], args=args)
        await self.redis.expire(key, SUMMARY_TTL_S)

    async def summaries(self, since_hour: int, until_hour: int) -> dict[int, dict[str, str]]:
        hours = range(since_hour, until_hour + 1)
        pipe = self.redis.pipeline(transaction=False)
        for hour in hours:
            pipe.hgetall(self.summary_key(hour))
        rows = await pipe.execute()
        return {h: {k.decode(): v.decode() for k, v in row.items()} for h, row in zip(hours, rows) if row}


@dataclass
class _Pending:
    info: ModelInfo
    score_counts: np.ndarray = field(default_factory=lambda: np.zeros(BINS, dtype=np.int64))
    texts: list[str] = field(default_factory=list)
    texts_skipped: int = 0


class DriftMonitor:
    """``observe`` works from construction; ``check`` needs ``attach`` first (the Redis
    client is made inside the worker's event loop)."""

    def __init__(
        self,
        model_info: Callable[[], ModelInfo],
        thresholds: DriftThresholds,
        *,
        min_posts: int,
        metrics_registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.model_info = model_info
        self.th = thresholds
        self.min_posts = min_posts
        self.clock = clock
        self.store: DriftStore | None = None
        self.incidents: IncidentStore | None = None
        self._pending: dict[str, _Pending] = {}
        self._references: dict[str, DriftReference | None] = {}
        r = metrics_registry
        self.psi_gauge = Gauge(
            "badbuzz_drift_score_psi", "PSI of the served model's scores in the drift window vs its validation scores", ["version"], registry=r
        )
        self.oov_gauge = Gauge(
            "badbuzz_drift_oov_ratio", "Share of tokens in the drift window outside the served model's training vocabulary", ["version"], registry=r
        )
        self.posts_gauge = Gauge("badbuzz_drift_window_posts", "Posts in the drift window of the served model", ["version"], registry=r)

    def attach(self, store: DriftStore, incidents: IncidentStore) -> None:
        self.store = store
        self.incidents = incidents

    def observe(self, batch: ScoredBatch) -> None:
        """On the batch path: bin the scores, keep the texts for the next flush."""
        key = version_key(batch.model)
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = _Pending(batch.model)
        pending.score_counts += bin_counts(batch.scores)
        if len(pending.texts) < MAX_PENDING_TEXTS:
            pending.texts.extend(batch.clean)
        else:
            pending.texts_skipped += len(batch.clean)

    async def reference(self, info: ModelInfo) -> DriftReference | None:
        key = version_key(info)
        if key not in self._references:
            loop = asyncio.get_running_loop()
            try:
                ref = await loop.run_in_executor(None, read_reference, info.bundle_dir) if info.bundle_dir else None
            except (OSError, ValueError, KeyError) as exc:
                log.error("drift reference of %s unreadable (%s): drift not watched", info.display, exc)
                ref = None
            if ref is None:
                log.warning("%s has no drift reference (trained before references existed?): drift not watched", info.display)
            self._references[key] = ref
        return self._references[key]

    async def flush(self) -> None:
        """Tokenise what was observed since the last flush and add it to Redis. What cannot
        be written stays pending for the next flush."""
        pending, self._pending = self._pending, {}
        minute = int(self.clock() * 1000) // MINUTE_MS
        loop = asyncio.get_running_loop()
        for key, p in pending.items():
            ref = await self.reference(p.info)
            if ref is None:
                continue
            # Tokenising a few seconds of traffic takes milliseconds: not on the event loop.
            vocab = await loop.run_in_executor(None, _vocabulary_drift, p.texts, ref)
            try:
                await self.store.add(key, minute, p.score_counts, tokens=vocab.tokens, oov=vocab.oov, new_terms=dict(vocab.new_terms))
            except (RedisError, OSError):
                self._merge_back(key, p)
                raise

    def _merge_back(self, key: str, p: _Pending) -> None:
        current = self._pending.get(key)
        if current is None:
            self._pending[key] = p
        else:
            current.score_counts += p.score_counts
            current.texts = (p.texts + current.texts)[:MAX_PENDING_TEXTS]

    async def check(self) -> Alert | None:
        """Flush, judge the served model's window, export it, and announce any change."""
        await self.flush()
        now_ms = int(self.clock() * 1000)
        info = self.model_info()
        ref = await self.reference(info)
        if ref is None:
            return None
        key = version_key(info)
        totals = await self.store.window(key, now_ms // MINUTE_MS)
        frequent = [(t, n) for t, n in totals.new_terms if n >= NEW_TERM_MIN_COUNT][:NEW_TERMS]
        status = assess(ref, totals.score_counts, tokens=totals.tokens, oov=totals.oov, new_terms=frequent, min_posts=self.min_posts)
        self._export(key, status)
        await self.store.record_summary(now_ms, key, status)
        return await self._announce(status, info, now_ms)

    def _export(self, version: str, status: DriftStatus) -> None:
        for gauge in (self.psi_gauge, self.oov_gauge, self.posts_gauge):
            gauge.clear()  # a swapped-out version's series goes away
        self.posts_gauge.labels(version).set(status.posts)
        if status.psi is not None:
            self.psi_gauge.labels(version).set(status.psi)
        if status.oov_rate is not None:
            self.oov_gauge.labels(version).set(status.oov_rate)

    async def _announce(self, status: DriftStatus, info: ModelInfo, now_ms: int) -> Alert | None:
        minute = now_ms // MINUTE_MS
        current = await self.incidents.get(DRIFT_SCOPE, Signal.MODEL_QUALITY)
        decision = decide_drift(status, current.episode if current else None, minute, self.th)
        if decision is None:
            return None
        new = next_incident(current, Signal.MODEL_QUALITY, DRIFT_SCOPE, decision, minute)
        window_min = self.store.window_min
        alert = model_quality_alert(
            new,
            decision,
            start_ms=now_ms - window_min * MINUTE_MS,
            end_ms=now_ms,
            window_minutes=window_min,
            model=info.display,
            model_version=info.version_label,
            volume=status.posts,
            drift_psi=None if status.psi is None else round(status.psi, 4),
            drift_psi_threshold=self.th.psi,
            drift_oov_rate=None if status.oov_rate is None else round(status.oov_rate, 4),
            drift_oov_threshold=self.th.oov,
            new_terms=[term for term, _ in status.new_terms],
        )
        if not await self.incidents.commit(current, new, alert, now_ms=now_ms):
            return None  # another worker announced this change first
        if decision.action in (Action.OPEN, Action.REOPEN):
            await self.store.record_alert(new.id, now_ms)
        log.warning("incident %s %s (%s): %s", new.id, alert.action, alert.severity, alert.numbers)
        return alert

    async def run(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.check()
            except (RedisError, OSError) as exc:
                log.error("drift check skipped, Redis unavailable: %s", exc)


def _vocabulary_drift(texts: list[str], ref: DriftReference) -> VocabularyDrift:
    return vocabulary_drift(token_counts(texts), ref.vocabulary, top=MAX_NEW_TERMS_PER_FLUSH, min_count=1)
