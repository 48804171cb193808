import pytest

from alerting.rules import Action, OpenIncident, RuleConfig, Severity, baseline_rate, evaluate, p_value
from stream.windows import WindowStats

CFG = RuleConfig(window_min=15, baseline_min=60, min_volume=30, margin=0.15, critical_margin=0.30, floor=0.20, prior=0.50)


def w(total, negative):
    return WindowStats(0, 14, total, negative, 0.0)


def test_calm_traffic_does_not_open():
    assert evaluate(w(600, 360), w(2400, 1440), None, CFG) is None


def test_rise_above_margin_opens_warning():
    d = evaluate(w(600, 460), w(2400, 1440), None, CFG)
    assert (d.action, d.severity, d.baseline) == (Action.OPEN, Severity.WARNING, 0.6)


def test_large_rise_opens_critical():
    d = evaluate(w(100, 95), w(2400, 1200), None, CFG)
    assert (d.action, d.severity) == (Action.OPEN, Severity.CRITICAL)


def test_low_volume_never_opens():
    assert evaluate(w(29, 29), w(2400, 240), None, CFG) is None


def test_no_alert_without_history_unless_a_prior_is_configured():
    no_prior = RuleConfig(prior=None)
    assert baseline_rate(w(29, 9), no_prior) is None
    assert evaluate(w(600, 600), w(29, 0), None, no_prior) is None
    assert evaluate(w(600, 600), w(30, 0), None, no_prior).action is Action.OPEN


def test_baseline_is_the_prior_when_history_is_thin_and_never_below_the_floor():
    assert baseline_rate(w(10, 9), CFG) == 0.50
    assert baseline_rate(w(1000, 50), CFG) == 0.20
    assert baseline_rate(w(1000, 300), CFG) == 0.30
    assert evaluate(w(1000, 649), w(5, 0), None, CFG) is None
    assert evaluate(w(1000, 650), w(5, 0), None, CFG).action is Action.OPEN
    assert evaluate(w(100, 34), w(1000, 50), None, CFG) is None
    assert evaluate(w(100, 35), w(1000, 50), None, CFG).action is Action.OPEN


def test_open_incident_is_not_re_alerted():
    incident = OpenIncident(Severity.WARNING, 0.6)
    assert evaluate(w(600, 470), w(2400, 1440), incident, CFG) is None


def test_escalation_once_to_critical():
    d = evaluate(w(600, 560), w(2400, 1440), OpenIncident(Severity.WARNING, 0.6), CFG)
    assert (d.action, d.severity) == (Action.ESCALATE, Severity.CRITICAL)
    assert evaluate(w(600, 590), w(2400, 1440), OpenIncident(Severity.CRITICAL, 0.6), CFG) is None


def test_resolution_has_hysteresis_against_the_opening_baseline():
    incident = OpenIncident(Severity.WARNING, 0.6)
    # Baseline window now contains the spike (0.75); resolution still compares with 0.6.
    assert evaluate(w(600, 410), w(2400, 1800), incident, CFG) is None  # 0.683: above 0.6 + 0.075
    d = evaluate(w(600, 400), w(2400, 1800), incident, CFG)  # 0.667 < 0.675
    assert (d.action, d.baseline) == (Action.RESOLVE, 0.6)


def test_config_validation():
    with pytest.raises(ValueError):
        RuleConfig(margin=0.4, critical_margin=0.3)


def test_small_scope_noise_is_not_significant():
    # 40 of 42 negative against an 80% baseline: a 15-point rise, but p ~ 0.008.
    assert evaluate(w(42, 40), w(200, 160), None, CFG) is None
    assert 0.001 < p_value(w(42, 40), 0.8) < 0.01
    # The same rise on a large window is overwhelming evidence.
    assert evaluate(w(1000, 950), w(4000, 3200), None, CFG).action is Action.OPEN


def test_escalation_also_needs_significance():
    incident = OpenIncident(Severity.WARNING, 0.5)
    assert evaluate(w(31, 27), w(200, 100), incident, CFG) is None
    assert evaluate(w(600, 500), w(2400, 1200), incident, CFG).action is Action.ESCALATE
