"""What the live dashboard shows, computed from the counters: per minute the volume, the
negative rate of the alert window ending there, and the escalation rule's baseline and
alert level at that minute (the same ``alerting.history.baseline_at`` the escalator
uses); plus the latest sliding windows and the scope's incidents. The arithmetic is pure;
``build_chart`` does the few reads one chart needs through the counters it is given, and
``ChartCache`` shares each chart among the viewers asking for it (the worker's
``stream.web`` and the console both serve charts through them)."""
from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import accumulate
from pathlib import Path

from alerting.alert import Alert, iso
from alerting.history import baseline_at, reads_for
from alerting.incidents import Incident
from alerting.rules import Baseline, Episode, RuleConfig, Severity, Signal
from counting.counters import Counters, HourBucket
from counting.windows import (
    GLOBAL_SCOPE,
    MINUTE_MS,
    SLIDING_WINDOWS_MIN,
    Bucket,
    WindowStats,
    minute_of,
    window_minutes,
)

DASHBOARD_HTML = Path(__file__).with_name("dashboard.html")
# A chart is recomputed at most this often per scope, length and model, however many viewers.
CHART_CACHE_S = 2.0
MIN_MINUTES = 10
MAX_MINUTES = 48 * 60
SIGNALS = (Signal.NEGATIVE_RATE, Signal.VOLUME)


@dataclass(frozen=True)
class ChartReads:
    """The minute buckets and hourly rollups one chart needs."""

    minutes: range
    hours: tuple[int, ...]


def reads_for_chart(end_minute: int, minutes: int, cfg: RuleConfig) -> ChartReads:
    """Every bucket the chart needs: the shown minutes, the alert windows and the
    history the baseline of each shown minute reaches back to."""
    points = range(end_minute - minutes + 1, end_minute + 1)
    first = min(reads_for(points.start, cfg).minutes.start, end_minute - max(SLIDING_WINDOWS_MIN) + 1)
    hours: set[int] = set()
    for start_hour in sorted({(m - cfg.window_min + 1) // 60 for m in points}):
        reads = reads_for(start_hour * 60 + cfg.window_min - 1, cfg)
        hours.update(reads.hours)
        hours.update(h for week in reads.seasonal for h in week)
    return ChartReads(range(first, end_minute + 1), tuple(sorted(hours)))


def parse_minutes(raw: str | None, *, default: int, retention_min: int) -> int:
    """The ``minutes`` query parameter; ValueError says what is allowed."""
    upper = min(MAX_MINUTES, retention_min)
    if raw is None or raw == "":
        return min(default, upper)
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if not MIN_MINUTES <= value <= upper:
        raise ValueError(f"minutes must be a whole number from {MIN_MINUTES} to {upper}, got {raw!r}")
    return value


def parse_scope(raw: str | None, scopes: Sequence[str]) -> str:
    scope = raw or scopes[0]
    if scope not in scopes:
        raise ValueError(f"unknown scope {scope!r}; known scopes: {', '.join(scopes)}")
    return scope


class _Sums:
    """Prefix sums over a contiguous minute range, for O(1) window totals."""

    def __init__(self, buckets: Mapping[int, Bucket], span: range):
        self.first = span.start
        self.total = [0, *accumulate(buckets[m].total if m in buckets else 0 for m in span)]
        self.negative = [0, *accumulate(buckets[m].negative if m in buckets else 0 for m in span)]

    def window(self, minutes: range) -> WindowStats:
        lo = max(0, minutes.start - self.first)
        hi = max(0, minutes.stop - self.first)
        return WindowStats(minutes.start, minutes.stop - 1, self.total[hi] - self.total[lo], self.negative[hi] - self.negative[lo], 0.0)


def _rate(stats: WindowStats) -> float | None:
    return stats.negative / stats.total if stats.total else None


def incident_view(incident: Incident, cfg: RuleConfig) -> dict:
    """An incident as the page explains it: what, since when, and when it closes."""
    baseline = incident.episode.baseline
    if incident.signal is Signal.NEGATIVE_RATE:
        closes_below = None if baseline.rate is None else baseline.rate + cfg.margin * cfg.resolve_fraction
    else:
        closes_below = None if baseline.per_minute is None else baseline.per_minute * (1 + (cfg.volume_factor - 1) * cfg.resolve_fraction)
    resolved = incident.episode.resolved_minute
    return {
        "id": incident.id,
        "signal": incident.signal.value,
        "severity": incident.severity.value,
        "open": incident.is_open,
        "opened": iso(incident.opened_ms),
        "opened_minute": incident.episode.opened_minute,
        "resolved": None if resolved is None else iso(resolved * MINUTE_MS),
        "resolved_minute": resolved,
        # Frozen when the incident opened: the spike itself would otherwise raise it.
        "baseline_rate": baseline.rate,
        "baseline_per_minute": baseline.per_minute,
        # Negative rate (rate incidents) or posts per minute (volume incidents) it closes below.
        "closes_below": closes_below,
    }


def _decision_minute(alert: Alert) -> int:
    """The event-time minute an announcement was decided at: the last minute of its window."""
    return int(datetime.fromisoformat(alert.window_end).timestamp()) // 60 - 1


def incident_from_history(incident_id: str, alerts: Sequence[Alert]) -> Incident | None:
    """An incident as its announcements (``alerting.incidents.IncidentHistory``, oldest
    first) tell it: open from its opening's minute to its last resolution's, with the
    baseline it was opened against. None for a signal the chart does not show."""
    if not alerts or alerts[-1].signal not in {s.value for s in SIGNALS}:
        return None
    first, last = next((a for a in alerts if a.action == "opened"), alerts[0]), alerts[-1]
    per_minute = None if first.expected_volume is None else first.expected_volume / first.window_minutes
    episode = Episode(
        Severity(last.severity), Baseline(first.baseline, per_minute, first.baseline_source), _decision_minute(first),
        _decision_minute(last) if last.action == "resolved" else None,
    )
    return Incident(incident_id, Signal(last.signal), last.scope, last.seq, episode)


def period_incidents(
    current: Sequence[Incident], history: Mapping[str, Sequence[Alert]], *, scope: str, first_minute: int, end_minute: int
) -> list[Incident]:
    """Every incident of ``scope`` open at some minute of ``first_minute..end_minute``:
    the current ones as the rule keeps them, the others from their announcements."""
    found = list(current)
    known = {i.id for i in current}
    for incident_id, alerts in history.items():
        incident = None if incident_id in known else incident_from_history(incident_id, alerts)
        if incident is None or incident.scope != scope:
            continue
        resolved = incident.episode.resolved_minute
        if incident.episode.opened_minute <= end_minute and (resolved is None or resolved >= first_minute):
            found.append(incident)
    return sorted(found, key=lambda i: i.episode.opened_minute)


def windows_payload(
    *,
    scope: str,
    scopes: Sequence[str],
    minute_buckets: Mapping[int, Bucket],
    global_minutes: Mapping[int, Bucket],
    hour_buckets: Mapping[int, HourBucket],
    global_hours: Mapping[int, HourBucket],
    end_minute: int,
    minutes: int,
    cfg: RuleConfig,
    incidents: Sequence[Incident],
    watermark_ms: int | None,
    model: str,
    now_ms: int,
) -> dict:
    reads = reads_for_chart(end_minute, minutes, cfg)
    sums = _Sums(minute_buckets, reads.minutes)
    points = []
    for minute in range(end_minute - minutes + 1, end_minute + 1):
        bucket = minute_buckets.get(minute, Bucket())
        window = sums.window(window_minutes(minute, cfg.window_min))
        baseline = baseline_at(minute, minute_buckets, global_minutes, hour_buckets, global_hours, cfg)
        points.append(
            {
                "minute": minute,
                "time": iso(minute * MINUTE_MS),
                "posts": bucket.total,
                "negative": bucket.negative,
                "window_posts": window.total,
                "window_negative": window.negative,
                "window_rate": _rate(window),
                "baseline": baseline.rate,
                "alert_level": None if baseline.rate is None else min(1.0, baseline.rate + cfg.margin),
                "expected_per_minute": baseline.per_minute,
            }
        )
    latest = {}
    for length in SLIDING_WINDOWS_MIN:
        stats = sums.window(window_minutes(end_minute, length))
        latest[str(length)] = {"minutes": length, "posts": stats.total, "negative": stats.negative, "rate": _rate(stats)}
    views = [incident_view(i, cfg) for i in incidents]
    open_rate = next((v for v in views if v["open"] and v["signal"] == Signal.NEGATIVE_RATE.value), None)
    current = points[-1]
    # While a rate incident is open the rule measures against its frozen baseline.
    baseline = open_rate["baseline_rate"] if open_rate else current["baseline"]
    return {
        "scope": scope,
        "scopes": list(scopes),
        "minutes": minutes,
        "end_minute": end_minute,
        "end": iso((end_minute + 1) * MINUTE_MS),
        "watermark": iso(watermark_ms) if watermark_ms else None,
        "generated_at": iso(now_ms),
        "model": model,
        "rule": {
            "window_min": cfg.window_min,
            "short_window_min": cfg.short_window_min,
            "min_volume": cfg.min_volume,
            "margin": cfg.margin,
            "floor": cfg.floor,
            "baseline_hours": cfg.baseline_hours,
        },
        "latest": latest,
        "baseline": baseline,
        "baseline_frozen": open_rate is not None,
        "alert_level": None if baseline is None else min(1.0, baseline + cfg.margin),
        "incidents": views,
        "points": points,
    }


async def build_chart(
    counters: Counters,
    *,
    scope: str,
    scopes: Sequence[str],
    minutes: int,
    cfg: RuleConfig,
    model: str,
    incidents_for: Callable[[int], Awaitable[list[Incident]]],
) -> dict:
    """The ``windows_payload`` of one chart ending at the newest counted minute;
    ``incidents_for(end_minute)`` gives the incidents to shade. The arithmetic (about a
    second for 48 hours) runs in a thread, so the event loop it shares keeps serving."""
    watermark = await counters.watermark_ms()
    end = minute_of(watermark or int(time.time() * 1000))
    reads = reads_for_chart(end, minutes, cfg)
    snapshot = await counters.snapshot(sorted({scope, GLOBAL_SCOPE}), reads.minutes, reads.hours)
    incidents = await incidents_for(end)
    return await asyncio.to_thread(
        windows_payload,
        scope=scope,
        scopes=scopes,
        minute_buckets=snapshot[scope][0],
        global_minutes=snapshot[GLOBAL_SCOPE][0],
        hour_buckets=snapshot[scope][1],
        global_hours=snapshot[GLOBAL_SCOPE][1],
        end_minute=end,
        minutes=minutes,
        cfg=cfg,
        incidents=incidents,
        watermark_ms=watermark or None,
        model=model,
        now_ms=int(time.time() * 1000),
    )


class ChartCache:
    """One chart built at a time, each reused for ``CHART_CACHE_S`` by every request for the
    same scope, length and model: a hundred viewers cost Redis and the loop one chart."""

    def __init__(self, build: Callable[[str, int, str], Awaitable[dict]], *, clock: Callable[[], float] = time.monotonic):
        self._build = build
        self._clock = clock
        self._lock = asyncio.Lock()
        self._charts: dict[tuple[str, int, str], tuple[float, dict]] = {}

    async def get(self, scope: str, minutes: int, model: str) -> dict:
        key = (scope, minutes, model)
        async with self._lock:
            cached = self._charts.get(key)
            if cached is not None and self._clock() - cached[0] < CHART_CACHE_S:
                return cached[1]
            payload = await self._build(scope, minutes, model)
            self._charts = {k: v for k, v in self._charts.items() if self._clock() - v[0] < CHART_CACHE_S}
            self._charts[key] = (self._clock(), payload)
            return payload


def dashboard_page(*, scope: str, minutes: int, refresh_s: int, initial: dict | None) -> str:
    """The page with its first numbers inline (None: Redis was unreachable, the page says so)."""
    template = DASHBOARD_HTML.read_text(encoding="utf-8")
    # The first render needs no round trip; "</" is escaped so the JSON cannot close the
    # script element.
    data = json.dumps(initial).replace("</", "<\\/")
    return (
        template.replace("__INITIAL_DATA__", data)
        .replace("__REFRESH_S__", str(refresh_s))
        .replace("__SCOPE__", json.dumps(scope).replace("</", "<\\/"))
        .replace("__MINUTES__", str(minutes))
    )
