"""Runs the rule for every scope and signal, after each batch and on a timer, and turns
its decisions into incident changes and queued alerts.

When the timer evaluates: event time stands still when posts stop coming, so an open
incident would never see its window drain. ``EventClock`` therefore lets event time
follow the wall clock once the shared watermark has not moved for ``idle_s`` (as Flink's
idle-source watermarks do): a stream silent that long is taken to be silent, not
delayed. While posts keep arriving, the timer evaluates at the watermark, so replaying
old data quickly never evaluates minutes the replay has not reached. Evaluation time
never goes backwards within one escalator.

Each scope is evaluated by one worker: the one assigned the scope's owner partition of
the raw topic (``owner_partition``), so N workers share the rule's reads instead of each
doing all of them, and ownership follows the consumer group's rebalances by itself. A
decision at a minute older than the incident's latest decision (an old owner still
finishing during a handover) is refused. When the watermark crosses several minutes at
once (a worker catching up a backlog), every minute crossed is evaluated, in order, so a
short burst inside the backlog raises the alert it would have raised live."""
from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from alerting.alert import Alert, iso
from alerting.drivers import over_represented
from alerting.history import baseline_at, long_window_start, observe, reads_for
from alerting.incidents import Incident, IncidentStore, next_incident
from alerting.rules import Baseline, Decision, Observation, RuleConfig, Signal, decide
from config.settings import Settings
from counting.counters import Counters, HourBucket
from counting.windows import GLOBAL_SCOPE, Bucket, minute_of
from models.scorer import ModelInfo

log = logging.getLogger(__name__)

WINDOW_SIGNALS = (Signal.NEGATIVE_RATE, Signal.VOLUME)
# At most this many crossed minutes are evaluated one by one after a jump of the
# watermark (three hours of backlog); older ones are covered by the windows of the first.
CATCH_UP_MAX_MIN = 180
# Re-evaluating within the same minute, or after the watermark moved on, re-reads only
# the last few minutes (and the new ones); everything is read afresh at least this often,
# so a late post for an older minute is seen within that.
RECENT_MIN = 3
FULL_READ_EVERY_S = 60.0


@dataclass
class _MinuteCache:
    """Minute buckets last read, per scope, over [first, last]."""

    first: int
    last: int
    data: dict[str, dict[int, Bucket]]
    evaluation: int  # the evaluation that last read into it
    full_read_at: float  # time.monotonic() of the last read of the whole range


def owner_partition(scope: str, partitions: int) -> int:
    """The raw-topic partition whose consumer evaluates ``scope`` (stable across workers
    and restarts: a CRC, not Python's salted hash)."""
    return zlib.crc32(scope.encode("utf-8")) % partitions


@dataclass(frozen=True)
class AlertContent:
    """What every alert carries besides the rule's numbers."""

    top_terms: int
    examples: int
    link_template: str  # may use {incident_id} and {alert_id}

    @classmethod
    def from_settings(cls, settings: Settings) -> AlertContent:
        return cls(top_terms=settings.alert_top_terms, examples=settings.alert_examples, link_template=settings.alert_link_template)

    def link(self, incident_id: str, alert_id: str) -> str:
        return self.link_template.format(incident_id=incident_id, alert_id=alert_id) if self.link_template else ""


class EventClock:
    """The event time a timer tick evaluates at (see the module docstring)."""

    def __init__(self, idle_s: float):
        self.idle_ms = int(idle_s * 1000)
        self._watermark_ms = 0
        self._moved_at_ms = 0

    def at(self, watermark_ms: int, now_ms: int) -> int:
        if watermark_ms != self._watermark_ms:
            self._watermark_ms, self._moved_at_ms = watermark_ms, now_ms
        if not watermark_ms:
            return 0
        quiet = now_ms - self._moved_at_ms
        if quiet < self.idle_ms:
            return watermark_ms
        return max(watermark_ms, min(now_ms, watermark_ms + quiet))


class Escalator:
    def __init__(
        self,
        counters: Counters,
        incidents: IncidentStore,
        cfg: RuleConfig,
        scopes: Sequence[str],
        model_info: Callable[[], ModelInfo],
        *,
        content: AlertContent,
        idle_s: float,
        clock: Callable[[], float] = time.time,
        cfg_for: Callable[[str], RuleConfig] | None = None,
        owns: Callable[[str], bool] | None = None,
    ):
        self.counters = counters
        self.incidents = incidents
        self.cfg = cfg
        # The decision's settings per scope (its sensitivity preset); windows and baselines use ``cfg``.
        self.cfg_for = cfg_for or (lambda scope: cfg)
        self.scopes = list(dict.fromkeys([GLOBAL_SCOPE, *scopes]))
        # Which scopes this process evaluates (a worker: those of its partitions; alone: all).
        self.owns: Callable[[str], bool] = owns or (lambda scope: True)
        self.model_info = model_info
        self.content = content
        self.clock = clock
        self.event_clock = EventClock(idle_s)
        self._last_minute = 0
        # Baselines change only when the long window's start moves (once a minute).
        self._baselines: tuple[int, dict[str, Baseline]] | None = None
        self._hours: tuple[int, dict[str, dict[int, HourBucket]]] | None = None
        self._minutes: _MinuteCache | None = None
        self._evaluation = 0
        # The last minute evaluated per scope, shared through Redis with later owners.
        self._evaluated: dict[str, int] = {}
        self._evaluated_key = f"{incidents.prefix}:evaluated"

    def watch(self, scopes: Sequence[str]) -> None:
        """Evaluate ``scopes`` from now on (the watch terms changed): a new one gets its
        baseline with the next evaluation, a removed one is no longer decided."""
        self.scopes = list(dict.fromkeys([GLOBAL_SCOPE, *scopes]))
        self._baselines = None
        self._hours = None
        self._minutes = None

    async def tick(self) -> list[Alert]:
        """The timer's evaluation."""
        now_ms = int(self.clock() * 1000)
        at_ms = self.event_clock.at(await self.counters.watermark_ms(), now_ms)
        return await self.evaluate(minute_of(at_ms)) if at_ms else []

    async def evaluate(self, end_minute: int, touched: Collection[str] | None = None, since: int | None = None) -> list[Alert]:
        """Decide on the owned scopes' windows at ``end_minute``, and at every minute
        crossed since the last evaluation. ``touched``: the scopes a batch just counted
        posts in. While the minute stays the same, nothing else can have changed for the
        other scopes, so only these are read and decided (with fifty watch terms, reading
        every scope after every batch halved throughput). ``since``: the oldest minute the
        batch counted; a scope never evaluated before starts there, so that a first batch
        spanning a backlog is decided minute by minute, as it would have been live."""
        owned = [s for s in self.scopes if self.owns(s)]
        self._evaluation += 1
        end_minute = max(end_minute, self._last_minute)
        self._last_minute = end_minute
        if not owned:
            return []
        # Each scope resumes after the last minute evaluated for it, by this worker or by
        # the one that owned it before: a handover must not skip the minutes in between,
        # even when the watermark no longer moves.
        for scope in [s for s in self._evaluated if s not in owned]:
            del self._evaluated[scope]
        unknown = [s for s in owned if s not in self._evaluated]
        if unknown:
            stored = await self.incidents.redis.hmget(self._evaluated_key, unknown)
            self._evaluated.update({s: int(m) for s, m in zip(unknown, stored) if m is not None})
        floor = end_minute - CATCH_UP_MAX_MIN + 1
        first_time = end_minute if since is None else max(floor, min(since, end_minute))
        starts = {s: max(floor, self._evaluated[s] + 1) if s in self._evaluated else first_time for s in owned}
        # Scopes already evaluated at this minute are decided again only if the batch touched them.
        again = [s for s in owned if starts[s] > end_minute and (touched is None or s in touched)]
        behind = [s for s in owned if starts[s] <= end_minute]
        if not behind:
            return await self._evaluate_at(end_minute, again)
        first = min(starts[s] for s in behind)
        # One read covers every minute crossed: each is then decided from memory.
        await self._buckets(list(dict.fromkeys([GLOBAL_SCOPE, *owned])), self._first_needed(first), end_minute)
        alerts = []
        for minute in range(first, end_minute + 1):
            due = [s for s in behind if starts[s] <= minute] + (again if minute == end_minute else [])
            alerts += await self._evaluate_at(minute, due)
        self._evaluated.update({s: end_minute for s in behind})
        await self.incidents.redis.hset(self._evaluated_key, mapping={s: end_minute for s in behind})
        return alerts

    def _first_needed(self, end_minute: int) -> int:
        """The first minute an evaluation at ``end_minute`` reads (its baseline's, or its
        long window's)."""
        return min(reads_for(end_minute, self.cfg).minutes.start, long_window_start(end_minute, self.cfg))

    async def _buckets(self, scopes: Sequence[str], first: int, last: int) -> dict[str, dict[int, Bucket]]:
        """Minute buckets of ``scopes`` over [first, last]: from memory when the last read
        covers them; the last ``RECENT_MIN`` minutes and any newer ones read again; the
        whole range read afresh when the cache lacks a scope or an older minute, or is
        ``FULL_READ_EVERY_S`` old."""
        cache = self._minutes
        now = time.monotonic()
        if cache is not None and cache.first <= first and all(s in cache.data for s in scopes):
            if cache.last > last or (cache.last == last and cache.evaluation == self._evaluation):
                return cache.data
            if cache.last == last or now - cache.full_read_at < FULL_READ_EVERY_S:
                moved = cache.last < last
                names = list(cache.data) if moved else list(scopes)
                again = range(max(first, cache.last - RECENT_MIN + 1), last + 1)
                fresh = await self.counters.snapshot(names, again, [])
                for scope, (buckets, _) in fresh.items():
                    kept = cache.data[scope]
                    # Moving on, the minutes no evaluation needs any more are dropped too.
                    for minute in [m for m in kept if m >= again.start or (moved and m < first)]:
                        del kept[minute]
                    kept.update(buckets)
                if moved:
                    cache.first, cache.last = first, last
                cache.evaluation = self._evaluation
                return cache.data
        names = list(dict.fromkeys([*(cache.data if cache is not None else ()), *scopes]))
        data = await self.counters.snapshot(names, range(first, last + 1), [])
        self._minutes = _MinuteCache(first, last, {scope: buckets for scope, (buckets, _) in data.items()}, self._evaluation, now)
        return self._minutes.data

    async def _evaluate_at(self, end_minute: int, scopes: Sequence[str]) -> list[Alert]:
        if not scopes:
            return []
        observations = await self.observe(end_minute, scopes)
        keys = [(signal, scope) for scope in scopes for signal in WINDOW_SIGNALS]
        current = await self.incidents.get_many(keys)
        alerts = []
        for signal, scope in keys:
            incident = current[(signal, scope)]
            if incident is not None and incident.episode.decided_minute > end_minute:
                continue  # decided at a later minute already: this evaluation is stale
            decision = decide(signal, observations[scope], incident.episode if incident else None, self.cfg_for(scope))
            if decision is None:
                continue
            alert = await self._announce(incident, signal, scope, decision, observations[scope])
            if alert is not None:
                alerts.append(alert)
        return alerts

    async def observe(self, end_minute: int, scopes: Sequence[str] | None = None) -> dict[str, Observation]:
        """Observations of ``scopes`` (default: all). Baselines, recomputed when the long
        window has moved, are computed for these scopes (and the global one they lean
        on) only: a worker never reads the history of scopes another one owns."""
        cfg = self.cfg
        scopes = self.scopes if scopes is None else list(scopes)
        start = long_window_start(end_minute, cfg)
        reads = reads_for(end_minute, cfg)
        if self._baselines is None or self._baselines[0] != start:
            self._baselines = (start, {})
        known = self._baselines[1]
        missing = [s for s in dict.fromkeys([GLOBAL_SCOPE, *scopes]) if s not in known]
        if not missing:
            minutes = await self._buckets(scopes, start, end_minute)
        else:
            # Complete hours change little: read them once per clock hour.
            if self._hours is None or self._hours[0] != reads.hour:
                self._hours = (reads.hour, {})
            hours = self._hours[1]
            unread = [s for s in dict.fromkeys([GLOBAL_SCOPE, *missing]) if s not in hours]
            if unread:
                hours.update({s: h for s, (_, h) in (await self.counters.snapshot(unread, range(0), reads.all_hours)).items()})
            minutes = await self._buckets(list(dict.fromkeys([GLOBAL_SCOPE, *missing, *scopes])), self._first_needed(end_minute), end_minute)
            global_minutes = minutes[GLOBAL_SCOPE]
            for scope in missing:
                known[scope] = baseline_at(end_minute, minutes[scope], global_minutes, hours[scope], hours[GLOBAL_SCOPE], cfg)
        return {scope: observe(end_minute, minutes[scope], known[scope], cfg) for scope in scopes}

    async def _announce(self, current: Incident | None, signal: Signal, scope: str, decision: Decision, obs: Observation) -> Alert | None:
        new = next_incident(current, signal, scope, decision, obs.minute)
        alert = await self._alert(new, decision, obs)
        if not await self.incidents.commit(current, new, alert, now_ms=int(self.clock() * 1000)):
            return None  # another worker announced this change first
        log.info(
            "incident %s %s (%s, %s %s): rate %.3f baseline %s volume %d p=%.2g",
            new.id, alert.action, alert.severity, signal.value, scope, alert.rate, alert.baseline, alert.volume, alert.p_value,
        )
        return alert

    async def _alert(self, incident: Incident, decision: Decision, obs: Observation) -> Alert:
        window, scope = obs.long, incident.scope
        minutes = range(window.start_minute, window.end_minute + 1)
        reference = range(window.start_minute - self.cfg.baseline_min, window.start_minute)
        drivers = over_represented(
            await self.counters.term_counts(scope, minutes), await self.counters.term_counts(scope, reference), self.content.top_terms
        )
        # Kept: the console shows what it can of them, feedback checks the model's word on them.
        examples = await self.counters.examples(scope, minutes, self.content.examples, keep=True)
        baseline = decision.baseline
        expected = None if baseline.per_minute is None else round(baseline.per_minute * self.cfg.window_min, 2)
        info = self.model_info()
        alert_id = incident.alert_id()
        return Alert(
            alert_id=alert_id,
            incident_id=incident.id,
            seq=incident.seq,
            signal=incident.signal.value,
            action=decision.action.value,
            severity=decision.severity.value,
            scope=scope,
            window_start=iso(window.start_ms),
            window_end=iso(window.end_ms),
            window_minutes=self.cfg.window_min,
            short_window_minutes=self.cfg.short_window_min,
            rate=round(window.rate, 4),
            short_rate=round(obs.short.rate, 4),
            baseline=None if baseline.rate is None else round(baseline.rate, 4),
            baseline_source=baseline.source,
            volume=window.total,
            negatives=window.negative,
            expected_volume=expected,
            volume_ratio=round(window.total / expected, 2) if expected else None,
            p_value=float(f"{decision.assessment.p_value:.3g}"),
            drivers=[d.to_dict() for d in drivers],
            example_post_ids=examples,
            model=info.display,
            model_version=info.version_label,
            link=self.content.link(incident.id, alert_id),
        )
