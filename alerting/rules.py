"""The escalation rule: pure functions from window statistics, a baseline and the scope's
incident episode (if any) to a decision. Nothing here reads Redis or a clock.

Two signals per scope:

- ``negative_rate``: the share of posts the model calls negative, against the baseline
  rate. Fires when the long window has the minimum volume, its rise is at least
  ``margin`` (practically large) and a one-sided binomial test puts it below
  ``p_value`` (statistically significant), and the short window is up by ``margin`` too
  (multi-window, as in SRE burn-rate alerts: the long window gives evidence, the short
  one shows it is still happening).
- ``volume``: posts per minute against the baseline volume. Fires when the long window
  holds at least ``volume_factor`` times the expected posts, a one-sided Poisson test
  is significant, and the short window is up by the same factor.

An episode opens at a severity tier (watch < warning < critical, by size of the rise
and volume), sends one ``escalated`` update each time its tier rises, and resolves with
hysteresis (the rise must fall below ``resolve_fraction`` of the opening threshold).
For ``cooldown_min`` minutes after it resolves, a new trigger reopens the same episode
(same incident id, ``reopened``) instead of paging afresh. That life cycle (``transition``)
is shared by every signal, model quality and drift included: each supplies only its
assessment."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import Enum

from scipy.stats import binom, poisson

from config.settings import Settings
from counting.windows import WindowStats


class Severity(str, Enum):
    WATCH = "watch"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Severity.WATCH: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


class Signal(str, Enum):
    NEGATIVE_RATE = "negative_rate"
    VOLUME = "volume"
    MODEL_QUALITY = "model_quality"


class Action(str, Enum):
    OPEN = "opened"
    ESCALATE = "escalated"
    REOPEN = "reopened"
    RESOLVE = "resolved"


@dataclass(frozen=True)
class RuleConfig:
    """The rule's settings (``BADBUZZ_ALERT_*``; their defaults live in ``Settings``)."""

    short_window_min: int
    window_min: int
    min_volume: int
    # Rise of the negative rate over baseline, in rate points, for each tier; warning and
    # critical also need that many posts in the long window.
    margin: float
    warning_margin: float
    critical_margin: float
    warning_volume: int
    critical_volume: int
    floor: float
    # Baseline rate assumed while a scope has too little history. None: a scope does not
    # alert on its rate until it has history (a freshly watched term is not an incident).
    prior: float | None
    p_value: float
    # Resolution needs the rise (or the volume excess) below this share of the opening
    # threshold: a rate hovering at the threshold neither flaps nor resolves.
    resolve_fraction: float
    cooldown_min: int
    # Volume spike: the long window holds this many times the expected posts.
    volume_factor: float
    volume_warning_factor: float
    volume_critical_factor: float
    # Baseline: exponentially weighted over the trailing hours before the long window,
    # raised to the median of the same hours of week in earlier weeks when enough of
    # them have data.
    baseline_hours: int
    baseline_half_life_h: float
    seasonal_weeks: int
    seasonal_min_weeks: int
    # Live minutes of history needed before the volume baseline is trusted.
    baseline_min_minutes: int
    # The minutes just before the long window: their negative posts are the reference
    # the alert's driver terms are compared with.
    baseline_min: int
    # Model quality: more than this many wrong-prediction feedbacks in the window.
    model_wrong_threshold: int
    model_window_min: int

    @classmethod
    def from_settings(cls, settings: Settings) -> RuleConfig:
        s = settings
        return cls(
            short_window_min=s.alert_short_window_min,
            window_min=s.alert_window_min,
            min_volume=s.alert_min_volume,
            margin=s.alert_margin,
            warning_margin=s.alert_warning_margin,
            critical_margin=s.alert_critical_margin,
            warning_volume=s.alert_warning_volume,
            critical_volume=s.alert_critical_volume,
            floor=s.alert_floor,
            prior=s.alert_prior,
            p_value=s.alert_p_value,
            resolve_fraction=s.alert_resolve_fraction,
            cooldown_min=s.alert_cooldown_min,
            volume_factor=s.alert_volume_factor,
            volume_warning_factor=s.alert_volume_warning_factor,
            volume_critical_factor=s.alert_volume_critical_factor,
            baseline_hours=s.alert_baseline_hours,
            baseline_half_life_h=s.alert_baseline_half_life_h,
            seasonal_weeks=s.alert_seasonal_weeks,
            seasonal_min_weeks=s.alert_seasonal_min_weeks,
            baseline_min_minutes=s.alert_baseline_min_minutes,
            baseline_min=s.baseline_window_min,
            model_wrong_threshold=s.alert_model_wrong_threshold,
            model_window_min=s.alert_model_window_min,
        )

    def __post_init__(self) -> None:
        if not 0 < self.margin <= self.warning_margin <= self.critical_margin:
            raise ValueError("need 0 < margin <= warning_margin <= critical_margin")
        if not 1 < self.volume_factor <= self.volume_warning_factor <= self.volume_critical_factor:
            raise ValueError("need 1 < volume_factor <= volume_warning_factor <= volume_critical_factor")
        if not 0 < self.p_value < 1:
            raise ValueError("need 0 < p_value < 1")
        if not 0 < self.resolve_fraction <= 1:
            raise ValueError("need 0 < resolve_fraction <= 1")
        if self.short_window_min < 1 or self.window_min < 1:
            raise ValueError("need windows of at least one minute")
        # A long window shorter than the short one makes the two the same window.
        object.__setattr__(self, "short_window_min", min(self.short_window_min, self.window_min))
        if self.baseline_half_life_h <= 0:
            raise ValueError("need baseline_half_life_h > 0")


# Rates are ratios of counts: 35/100 - 0.20 must count as a rise of 0.15, not 0.1499...
_EPS = 1e-9


# --- baseline -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Slot:
    """A stretch of a scope's history: its posts, negatives, the minutes in it during
    which the stream was live (had any post at all), and its age in hours (from its
    middle to the start of the long window)."""

    age_h: float
    total: int
    negative: int
    live_minutes: int


@dataclass(frozen=True)
class History:
    recent: tuple[Slot, ...] = ()
    # One slot per earlier week: the hours of week around the long window's start.
    seasonal: tuple[Slot, ...] = ()
    # For each recent slot, the same hour of week in each earlier week.
    recent_seasonal: tuple[tuple[Slot, ...], ...] = ()


@dataclass(frozen=True)
class Baseline:
    """What a scope usually looks like: its negative rate (None: unknown, no rate alert)
    and posts per minute (None: unknown, no volume alert)."""

    rate: float | None
    per_minute: float | None
    source: str = "none"  # trailing | seasonal | prior | none
    posts: int = 0


# The baseline of signals not measured against one (model quality, drift).
NO_BASELINE = Baseline(None, None)

def estimate_baseline(history: History, cfg: RuleConfig) -> Baseline:
    """Trailing: the exponentially weighted rate (and volume) of the recent slots.
    Seasonal, once ``seasonal_min_weeks`` earlier weeks have data at this hour of week:
    their median, shifted by how far the recent hours ran from *their* seasonal values
    (the same weighting). So a daily cycle is expected rather than lagged behind, and a
    level shift or slow drift is still followed as the trailing baseline would."""
    recent_rate, recent_volume, posts = _ewma(history.recent, cfg)
    now_rate, now_volume = _seasonal(history.seasonal, cfg)
    rate, source = recent_rate, "trailing"
    offset = _rate_offset(history, cfg)
    if now_rate is not None and (offset is not None or recent_rate is None):
        rate, source = now_rate + (offset or 0.0), "seasonal"
    if rate is None and cfg.prior is not None:
        rate, source = cfg.prior, "prior"
    if rate is None:
        source = "none"
    volume = recent_volume
    ratio = _volume_ratio(history, cfg)
    if now_volume is not None and (ratio is not None or recent_volume is None):
        volume = now_volume * (1.0 if ratio is None else ratio)
    return Baseline(None if rate is None else min(1.0, max(rate, cfg.floor)), volume, source, posts)


def _ewma(slots: tuple[Slot, ...], cfg: RuleConfig) -> tuple[float | None, float | None, int]:
    total = sum(s.total for s in slots)
    live = sum(s.live_minutes for s in slots)
    weights = [_weight(s, cfg) for s in slots]
    w_total = sum(w * s.total for w, s in zip(weights, slots))
    w_negative = sum(w * s.negative for w, s in zip(weights, slots))
    w_live = sum(w * s.live_minutes for w, s in zip(weights, slots))
    rate = w_negative / w_total if total >= cfg.min_volume and w_total > 0 else None
    volume = w_total / w_live if live >= cfg.baseline_min_minutes and w_live > 0 else None
    return rate, volume, total


def _weight(slot: Slot, cfg: RuleConfig) -> float:
    return 0.5 ** (slot.age_h / cfg.baseline_half_life_h)


def _rate_offset(history: History, cfg: RuleConfig) -> float | None:
    """Weighted mean of (recent rate - its seasonal rate) over the recent slots that have
    a seasonal counterpart; None unless they cover ``baseline_min_minutes`` of live
    stream and ``min_volume`` posts (a few minutes of history would make it noise)."""
    total = live = weighted = residual = 0.0
    for slot, weeks in zip(history.recent, history.recent_seasonal):
        expected, _ = _seasonal(weeks, cfg, hours=1)
        if expected is None or not slot.total:
            continue
        w = _weight(slot, cfg) * slot.total
        total += slot.total
        live += slot.live_minutes
        weighted += w
        residual += w * (slot.negative / slot.total - expected)
    enough = total >= cfg.min_volume and live >= cfg.baseline_min_minutes
    return residual / weighted if enough and weighted > 0 else None


def _volume_ratio(history: History, cfg: RuleConfig) -> float | None:
    """Weighted ratio of recent posts to what the seasonal volume expected for them."""
    live = actual = expected_total = 0.0
    for slot, weeks in zip(history.recent, history.recent_seasonal):
        _, per_minute = _seasonal(weeks, cfg, hours=1)
        if per_minute is None or not slot.live_minutes:
            continue
        w = _weight(slot, cfg)
        live += slot.live_minutes
        actual += w * slot.total
        expected_total += w * per_minute * slot.live_minutes
    return actual / expected_total if live >= cfg.baseline_min_minutes and expected_total > 0 else None


def _seasonal(slots: tuple[Slot, ...], cfg: RuleConfig, hours: int = 3) -> tuple[float | None, float | None]:
    """Median rate and posts per minute over the earlier weeks that have enough data
    (``hours``: how long each week's slot is, to scale the live minutes it needs)."""
    min_live = cfg.baseline_min_minutes * hours / 3
    rates = sorted(s.negative / s.total for s in slots if s.total >= cfg.min_volume)
    volumes = sorted(s.total / s.live_minutes for s in slots if s.live_minutes and s.live_minutes >= min_live)
    rate = _median(rates) if len(rates) >= cfg.seasonal_min_weeks else None
    volume = _median(volumes) if len(volumes) >= cfg.seasonal_min_weeks else None
    return rate, volume


def _median(values: list[float]) -> float:
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


# --- assessing one observation ----------------------------------------------------------


@dataclass(frozen=True)
class Observation:
    minute: int  # the evaluation's last (event-time) minute
    short: WindowStats
    long: WindowStats
    baseline: Baseline


@dataclass(frozen=True)
class Assessment:
    elevated: bool  # every opening condition holds
    clear: bool  # far enough below the threshold to resolve
    severity: Severity | None  # tier when elevated
    p_value: float
    level: float  # rate points above baseline, or times the expected volume


def binomial_p_value(window: WindowStats, base: float) -> float:
    """P(at least this many negatives | each post negative with probability ``base``)."""
    return float(binom.sf(window.negative - 1, window.total, base))


def poisson_p_value(count: int, expected: float) -> float:
    """P(at least ``count`` posts | Poisson arrivals with mean ``expected``)."""
    if expected <= 0:
        return 0.0 if count > 0 else 1.0
    return float(poisson.sf(count - 1, expected))


def assess_rate(obs: Observation, base: float, cfg: RuleConfig) -> Assessment:
    rise = obs.long.rate - base
    short_rise = obs.short.rate - base
    p = binomial_p_value(obs.long, base) if obs.long.total else 1.0
    elevated = (
        obs.long.total >= cfg.min_volume
        and rise >= cfg.margin - _EPS
        and p <= cfg.p_value
        and obs.short.total > 0
        and short_rise >= cfg.margin - _EPS
    )
    low = cfg.margin * cfg.resolve_fraction
    clear = rise < low - _EPS or (short_rise < low - _EPS and rise < cfg.margin - _EPS)
    severity = None
    if elevated:
        severity = Severity.WATCH
        if rise >= cfg.critical_margin - _EPS and obs.long.total >= cfg.critical_volume:
            severity = Severity.CRITICAL
        elif rise >= cfg.warning_margin - _EPS and obs.long.total >= cfg.warning_volume:
            severity = Severity.WARNING
    return Assessment(elevated, clear, severity, p, rise)


def assess_volume(obs: Observation, per_minute: float, cfg: RuleConfig) -> Assessment:
    expected = per_minute * cfg.window_min
    expected_short = per_minute * cfg.short_window_min
    ratio = obs.long.total / expected if expected > 0 else math.inf
    short_ratio = obs.short.total / expected_short if expected_short > 0 else math.inf
    p = poisson_p_value(obs.long.total, expected)
    elevated = (
        obs.long.total >= cfg.min_volume
        and ratio >= cfg.volume_factor - _EPS
        and p <= cfg.p_value
        and obs.short.total > 0
        and short_ratio >= cfg.volume_factor - _EPS
    )
    low = 1 + (cfg.volume_factor - 1) * cfg.resolve_fraction
    clear = ratio < low - _EPS or (short_ratio < low - _EPS and ratio < cfg.volume_factor - _EPS)
    severity = None
    if elevated:
        severity = Severity.WATCH
        if ratio >= cfg.volume_critical_factor - _EPS and obs.long.total >= cfg.critical_volume:
            severity = Severity.CRITICAL
        elif ratio >= cfg.volume_warning_factor - _EPS and obs.long.total >= cfg.warning_volume:
            severity = Severity.WARNING
    return Assessment(elevated, clear, severity, p, ratio)


# --- episodes -------------------------------------------------------------------------


@dataclass(frozen=True)
class Episode:
    """A scope's incident as the rule sees it. The baseline is frozen when it opens: the
    spike itself flows into the trailing history and would otherwise "resolve" it."""

    severity: Severity
    baseline: Baseline
    opened_minute: int
    resolved_minute: int | None = None
    # The minute of the latest decision announced: an evaluation of an earlier minute is stale.
    decided_minute: int = 0

    @property
    def is_open(self) -> bool:
        return self.resolved_minute is None


@dataclass(frozen=True)
class Decision:
    action: Action
    severity: Severity
    baseline: Baseline
    assessment: Assessment


def transition(
    episode: Episode | None, minute: int, cooldown_min: int, baseline: Baseline, assess: Callable[[Baseline], Assessment | None]
) -> Decision | None:
    """The incident state machine every signal shares: what to announce at ``minute``
    (None: nothing), given the signal's assessment against a baseline (None: it cannot
    judge this time, which changes nothing).

    With no episode, or one resolved at least ``cooldown_min`` minutes ago, an elevated
    assessment against the current ``baseline`` opens a new one. Within the cool-down an
    elevated assessment against the episode's frozen baseline reopens it. An open episode
    resolves once clear, and escalates when its tier rises (never when it falls)."""
    fresh = episode is None or (episode.resolved_minute is not None and minute - episode.resolved_minute >= cooldown_min)
    against = baseline if fresh else episode.baseline
    assessment = assess(against)
    if assessment is None:
        return None
    if fresh or not episode.is_open:
        if not assessment.elevated:
            return None
        return Decision(Action.OPEN if fresh else Action.REOPEN, assessment.severity, against, assessment)
    if assessment.clear:
        return Decision(Action.RESOLVE, episode.severity, against, assessment)
    if assessment.elevated and assessment.severity.rank > episode.severity.rank:
        return Decision(Action.ESCALATE, assessment.severity, against, assessment)
    return None


def decide(signal: Signal, obs: Observation, episode: Episode | None, cfg: RuleConfig) -> Decision | None:
    """What to announce for one signal of one scope at ``obs.minute`` (None: nothing)."""
    return transition(episode, obs.minute, cfg.cooldown_min, obs.baseline, lambda baseline: _assess(signal, obs, baseline, cfg))


def _assess(signal: Signal, obs: Observation, baseline: Baseline, cfg: RuleConfig) -> Assessment | None:
    if signal is Signal.NEGATIVE_RATE:
        return None if baseline.rate is None else assess_rate(obs, baseline.rate, cfg)
    if signal is Signal.VOLUME:
        return None if baseline.per_minute is None else assess_volume(obs, baseline.per_minute, cfg)
    raise ValueError(f"signal {signal.value} is not evaluated on windows")


def advance(episode: Episode | None, decision: Decision, minute: int) -> Episode:
    """The episode after a decision was announced."""
    if decision.action is Action.OPEN:
        return Episode(decision.severity, decision.baseline, minute, decided_minute=minute)
    assert episode is not None
    decided = max(episode.decided_minute, minute)
    if decision.action is Action.RESOLVE:
        return replace(episode, resolved_minute=minute, decided_minute=decided)
    if decision.action is Action.REOPEN:
        return replace(episode, severity=decision.severity, resolved_minute=None, decided_minute=decided)
    return replace(episode, severity=decision.severity, decided_minute=decided)


def resolve_by_hand(episode: Episode, minute: int, level: Baseline) -> Episode:
    """The episode after a responder resolved it at ``minute``, ``level`` being what the
    scope looks like now. The frozen baseline is raised to that level, so that during the
    cool-down ``transition`` reopens the episode only on a new significant rise above it,
    not on the rise the responder has just dealt with; after the cool-down a new episode
    is judged against the usual baseline, as after any resolution."""
    base = episode.baseline

    def raised(frozen: float | None, now: float | None) -> float | None:
        return frozen if frozen is None or now is None else max(frozen, now)

    baseline = Baseline(raised(base.rate, level.rate), raised(base.per_minute, level.per_minute), "manual", base.posts)
    return replace(episode, baseline=baseline, resolved_minute=minute)


# --- model quality ----------------------------------------------------------------------


def decide_model_quality(wrong: int, episode: Episode | None, minute: int, cfg: RuleConfig) -> Decision | None:
    """More than ``model_wrong_threshold`` wrong-prediction feedbacks in the window is a
    warning, more than twice that critical; resolved at half the threshold or less."""
    threshold = cfg.model_wrong_threshold
    severity = Severity.CRITICAL if wrong > 2 * threshold else Severity.WARNING if wrong > threshold else None
    assessment = Assessment(severity is not None, wrong <= threshold * cfg.resolve_fraction, severity, 1.0, float(wrong))
    return transition(episode, minute, cfg.cooldown_min, NO_BASELINE, lambda _: assessment)
