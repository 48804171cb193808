"""The escalation rule on single observations: gates, tiers, hysteresis, cool-down,
baselines. Whole synthetic series are in test_alerting_series.py."""
import math

import pytest

from alerting.rules import (
    Action,
    Assessment,
    Baseline,
    Episode,
    History,
    Observation,
    Severity,
    Signal,
    Slot,
    binomial_p_value,
    decide,
    decide_model_quality,
    estimate_baseline,
    poisson_p_value,
    resolve_by_hand,
    transition,
)
from counting.windows import WindowStats
from tests.configs import rule_config

# The thresholds spelled out, so the expectations below do not move with the defaults.
CFG = rule_config(margin=0.15, warning_margin=0.20, critical_margin=0.30, warning_volume=100, critical_volume=300, p_value=0.001, prior=0.50)
RATE, VOLUME = Signal.NEGATIVE_RATE, Signal.VOLUME


def w(total, negative):
    return WindowStats(0, 14, total, negative, 0.0)


def obs(long, short=None, *, rate=0.6, per_minute=40.0, minute=100):
    # By default the short window is a third of the long one at the same rate.
    short = short or w(long.total // 3, long.negative // 3)
    return Observation(minute, short, long, Baseline(rate, per_minute, "trailing", 10_000))


def rate_decision(long, short=None, episode=None, **kw):
    d = decide(RATE, obs(long, short, **kw), episode, CFG)
    return None if d is None else (d.action, d.severity)


def test_calm_traffic_does_not_open():
    assert rate_decision(w(600, 360)) is None
    assert decide(VOLUME, obs(w(600, 360)), None, CFG) is None


def test_rise_of_the_margin_opens_a_watch_bigger_rises_open_higher_tiers():
    assert rate_decision(w(600, 449)) is None  # 0.748: 14.8 points
    assert rate_decision(w(600, 450)) == (Action.OPEN, Severity.WATCH)  # 15 points
    assert rate_decision(w(600, 480)) == (Action.OPEN, Severity.WARNING)  # 20 points, 600 posts
    assert rate_decision(w(600, 540)) == (Action.OPEN, Severity.CRITICAL)  # 30 points, 600 posts


def test_tiers_also_need_volume():
    # A 35-point rise on 99 posts is only a watch; on 299 posts a warning.
    assert rate_decision(w(99, 95)) == (Action.OPEN, Severity.WATCH)
    assert rate_decision(w(299, 285)) == (Action.OPEN, Severity.WARNING)
    assert rate_decision(w(300, 285)) == (Action.OPEN, Severity.CRITICAL)


def test_low_volume_never_opens():
    assert rate_decision(w(29, 29)) is None


def test_the_short_window_must_be_elevated_too():
    # The long window is up 20 points, but the last five minutes are back to normal:
    # the spike is over, nobody should be paged for it now.
    assert rate_decision(w(600, 480), w(200, 120)) is None
    assert rate_decision(w(600, 480), w(200, 150)) == (Action.OPEN, Severity.WARNING)
    assert rate_decision(w(600, 480), w(0, 0)) is None


def test_significance_is_required():
    # 40 of 42 negative against an 80% baseline: a 15-point rise, but p ~ 0.008.
    assert rate_decision(w(42, 40), w(14, 14), rate=0.8) is None
    assert 0.001 < binomial_p_value(w(42, 40), 0.8) < 0.01
    # The same rise on a large window is overwhelming evidence.
    assert rate_decision(w(1000, 950), w(200, 190), rate=0.8) == (Action.OPEN, Severity.WATCH)


def test_no_rate_alert_without_a_baseline():
    assert decide(RATE, Observation(100, w(200, 200), w(600, 600), Baseline(None, 40.0)), None, CFG) is None


def test_open_incident_is_not_re_alerted_at_the_same_tier():
    episode = Episode(Severity.WARNING, Baseline(0.6, 40.0), 90)
    assert rate_decision(w(600, 490), episode=episode) is None


def test_escalation_when_the_tier_rises_and_only_then():
    watch = Episode(Severity.WATCH, Baseline(0.6, 40.0), 90)
    assert rate_decision(w(600, 480), episode=watch) == (Action.ESCALATE, Severity.WARNING)
    assert rate_decision(w(600, 560), episode=watch) == (Action.ESCALATE, Severity.CRITICAL)
    critical = Episode(Severity.CRITICAL, Baseline(0.6, 40.0), 90)
    assert rate_decision(w(600, 590), episode=critical) is None
    # A tier that falls back does not announce anything.
    assert rate_decision(w(600, 460), episode=critical) is None


def test_resolution_has_hysteresis_against_the_frozen_baseline():
    episode = Episode(Severity.WARNING, Baseline(0.6, 40.0), 90)
    # The trailing baseline has caught up with the spike (0.75); the episode keeps 0.6.
    assert rate_decision(w(600, 406), w(200, 136), episode=episode, rate=0.75) is None  # 0.677, 0.68
    assert rate_decision(w(600, 404), w(200, 134), episode=episode, rate=0.75) == (Action.RESOLVE, Severity.WARNING)  # 0.673
    # Below the opening threshold with the last five minutes back to normal: resolved.
    assert rate_decision(w(600, 440), w(200, 134), episode=episode) == (Action.RESOLVE, Severity.WARNING)
    assert rate_decision(w(600, 440), w(200, 136), episode=episode) is None


def test_an_empty_window_resolves():
    episode = Episode(Severity.WATCH, Baseline(0.6, 40.0), 90)
    assert rate_decision(w(0, 0), w(0, 0), episode=episode) == (Action.RESOLVE, Severity.WATCH)
    assert decide(VOLUME, obs(w(0, 0), w(0, 0)), episode, CFG).action is Action.RESOLVE


def test_cool_down_reopens_the_same_episode_then_opens_a_new_one():
    resolved = Episode(Severity.WARNING, Baseline(0.6, 40.0), 50, resolved_minute=80)
    assert rate_decision(w(600, 480), minute=109, episode=resolved) == (Action.REOPEN, Severity.WARNING)
    assert rate_decision(w(600, 480), minute=110, episode=resolved) == (Action.OPEN, Severity.WARNING)
    assert rate_decision(w(600, 400), minute=100, episode=resolved) is None


def test_reopening_uses_the_episode_baseline():
    resolved = Episode(Severity.WATCH, Baseline(0.5, 40.0), 50, resolved_minute=80)
    # 0.66 is 16 points above the episode's 0.5, though only 6 above today's 0.6.
    assert rate_decision(w(600, 396), w(200, 132), minute=90, episode=resolved) == (Action.REOPEN, Severity.WATCH)
    assert rate_decision(w(600, 396), w(200, 132), minute=110, episode=resolved) is None


def test_a_manual_resolution_reopens_only_on_a_new_rise_above_the_level_it_left():
    # Open at 0.6 against a 0.5 baseline; a responder resolves it while the rate still runs at 0.8.
    open_ = Episode(Severity.WARNING, Baseline(0.5, 40.0, "trailing", 900), 50)
    resolved = resolve_by_hand(open_, 90, Baseline(0.8, 45.0))
    assert (resolved.resolved_minute, resolved.baseline) == (90, Baseline(0.8, 45.0, "manual", 900))
    # The same 0.8 within the cool-down is no news; 0.95 (15 points above it) reopens.
    assert rate_decision(w(600, 480), minute=95, episode=resolved) is None
    assert rate_decision(w(600, 570), w(200, 190), minute=95, episode=resolved) == (Action.REOPEN, Severity.WATCH)
    # A level below the frozen baseline never lowers it; an unknown level leaves it as it was.
    assert resolve_by_hand(open_, 90, Baseline(0.3, None)).baseline == Baseline(0.5, 40.0, "manual", 900)


def test_volume_spike_tiers():
    expected = 40.0 * 15  # 600 posts in the long window
    assert decide(VOLUME, obs(w(1799, 1079), w(599, 359)), None, CFG) is None  # 2.998x
    for total, severity in ((1800, Severity.WATCH), (3000, Severity.WARNING), (6000, Severity.CRITICAL)):
        d = decide(VOLUME, obs(w(total, 0), w(total // 3, 0)), None, CFG)
        assert (d.action, d.severity, d.assessment.level) == (Action.OPEN, severity, total / expected)


def test_volume_spike_from_nothing_needs_the_minimum_volume():
    assert decide(VOLUME, obs(w(29, 0), w(10, 0), per_minute=0.0), None, CFG) is None
    d = decide(VOLUME, obs(w(30, 0), w(10, 0), per_minute=0.0), None, CFG)
    assert (d.action, d.severity, d.assessment.level, d.assessment.p_value) == (Action.OPEN, Severity.WATCH, math.inf, 0.0)


def test_volume_needs_significance():
    # 31 posts where 10 are usual (3.1x) is no accident: p ~ 1e-7.
    assert poisson_p_value(31, 10.0) < 1e-6
    # 9 posts where 3 are usual (3x) is not evidence, and below the minimum volume anyway.
    assert poisson_p_value(9, 3.0) > 0.001


def test_volume_resolution_hysteresis():
    episode = Episode(Severity.WATCH, Baseline(0.6, 40.0), 90)
    assert decide(VOLUME, obs(w(1300, 0), w(500, 0)), episode, CFG) is None  # 2.17x
    assert decide(VOLUME, obs(w(1190, 0), w(500, 0)), episode, CFG).action is Action.RESOLVE  # 1.98x
    assert decide(VOLUME, obs(w(1700, 0), w(300, 0)), episode, CFG).action is Action.RESOLVE  # 2.8x, short 1.5x


def test_baseline_sources_floor_and_prior():
    assert estimate_baseline(History(), CFG) == Baseline(0.5, None, "prior", 0)
    assert estimate_baseline(History(), rule_config()) == Baseline(None, None, "none", 0)
    thin = History((Slot(1.0, 29, 29, 60),))
    assert estimate_baseline(thin, rule_config()).rate is None
    low = History((Slot(1.0, 1000, 50, 60),))
    assert estimate_baseline(low, CFG) == Baseline(0.20, 1000 / 60, "trailing", 1000)


def test_ewma_weighs_recent_hours_more():
    # Six hours ago 40% negative, just now 70%: with a six-hour half-life the recent
    # hour weighs twice as much: (0.7 * 2 + 0.4) / 3 = 0.6.
    history = History((Slot(0.0, 600, 420, 60), Slot(6.0, 600, 240, 60)))
    assert estimate_baseline(history, CFG).rate == pytest.approx(0.6)


def test_seasonal_baseline_expects_the_hour_of_week_shifted_by_the_recent_level():
    # The last hour ran at 50% where earlier weeks ran at 40% at that hour (10 points
    # above usual) and 10 posts a minute where they had 5 (twice as busy). Earlier weeks
    # had 30% and 8 posts a minute at the coming hour: expect 40% and 16 a minute.
    recent = (Slot(0.5, 600, 300, 60),)
    counterparts = ((Slot(168.5, 300, 120, 60), Slot(336.5, 300, 120, 60)),)
    coming = (Slot(168.0, 1440, 432, 180), Slot(336.0, 1440, 432, 180))
    baseline = estimate_baseline(History(recent, coming, counterparts), CFG)
    assert (baseline.rate, baseline.per_minute, baseline.source) == (pytest.approx(0.4), pytest.approx(16.0), "seasonal")
    # The trailing baseline alone would have lagged the daily cycle at 50%.
    assert estimate_baseline(History(recent), CFG) == Baseline(0.5, 10.0, "trailing", 600)


def test_seasonal_needs_enough_weeks_and_counterparts():
    recent = (Slot(0.5, 600, 300, 60),)
    coming = (Slot(168.0, 1440, 432, 180), Slot(336.0, 1440, 432, 180))
    counterparts = ((Slot(168.5, 300, 120, 60), Slot(336.5, 300, 120, 60)),)
    # One week is not a pattern.
    assert estimate_baseline(History(recent, coming[:1], counterparts), CFG).source == "trailing"
    # Nothing to compare the recent hours with: the trailing level stands.
    assert estimate_baseline(History(recent, coming, ((),)), CFG).source == "trailing"
    # No recent history at all: the seasonal values as they are.
    assert estimate_baseline(History((), coming, ()), CFG) == Baseline(pytest.approx(0.3), 8.0, "seasonal", 0)


def test_model_quality_rule():
    cfg = rule_config(model_wrong_threshold=10)
    assert decide_model_quality(10, None, 0, cfg) is None
    opened = decide_model_quality(11, None, 0, cfg)
    assert (opened.action, opened.severity) == (Action.OPEN, Severity.WARNING)
    episode = Episode(Severity.WARNING, Baseline(None, None), 0)
    assert decide_model_quality(20, episode, 1, cfg) is None
    assert decide_model_quality(21, episode, 1, cfg).action is Action.ESCALATE
    assert decide_model_quality(6, episode, 5, cfg) is None
    assert decide_model_quality(5, episode, 5, cfg).action is Action.RESOLVE


def test_config_validation():
    with pytest.raises(ValueError):
        rule_config(margin=0.4, critical_margin=0.3)
    with pytest.raises(ValueError):
        rule_config(volume_factor=1.0)
    with pytest.raises(ValueError):
        rule_config(short_window_min=0)
    assert rule_config(short_window_min=20, window_min=15).short_window_min == 15


def _assessment(severity=None, clear=False):
    return Assessment(severity is not None, clear, severity, 1.0, 0.0)


def test_the_shared_state_machine_opens_escalates_and_resolves():
    now = Baseline(0.6, 40.0)
    opened = transition(None, 100, 30, now, lambda _: _assessment(Severity.WATCH))
    assert (opened.action, opened.severity, opened.baseline) == (Action.OPEN, Severity.WATCH, now)
    assert transition(None, 100, 30, now, lambda _: _assessment()) is None
    episode = Episode(Severity.WARNING, Baseline(0.5, 30.0), 90)
    assert transition(episode, 100, 30, now, lambda _: _assessment(Severity.WARNING)) is None
    assert transition(episode, 100, 30, now, lambda _: _assessment(Severity.WATCH)) is None
    escalated = transition(episode, 100, 30, now, lambda _: _assessment(Severity.CRITICAL))
    assert (escalated.action, escalated.severity) == (Action.ESCALATE, Severity.CRITICAL)
    # Resolving announces the tier the episode had, not the assessment's.
    resolved = transition(episode, 100, 30, now, lambda _: _assessment(clear=True))
    assert (resolved.action, resolved.severity) == (Action.RESOLVE, Severity.WARNING)
    # A signal that cannot judge this time changes nothing, even while open.
    assert transition(episode, 100, 30, now, lambda _: None) is None


def test_the_shared_state_machine_reopens_within_the_cool_down_against_the_frozen_baseline():
    frozen, now = Baseline(0.5, 30.0), Baseline(0.6, 40.0)
    resolved = Episode(Severity.WARNING, frozen, 50, resolved_minute=80)
    judged = []

    def assess(baseline):
        judged.append(baseline)
        return _assessment(Severity.WATCH)

    reopened = transition(resolved, 109, 30, now, assess)
    assert (reopened.action, reopened.severity, reopened.baseline) == (Action.REOPEN, Severity.WATCH, frozen)
    assert transition(resolved, 109, 30, now, lambda _: _assessment(clear=True)) is None  # already resolved
    fresh = transition(resolved, 110, 30, now, assess)
    assert (fresh.action, fresh.baseline) == (Action.OPEN, now)
    assert judged == [frozen, now]
