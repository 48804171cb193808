"""Sensitivity presets: what each sets, and that one observation alerts differently on each."""
import pytest

from alerting.presets import InvalidPreset, ScopeConfigs, preset_config
from alerting.rules import Action, Baseline, Observation, Severity, Signal, decide
from counting.windows import WindowStats
from tests.configs import rule_config

CFG = rule_config(margin=0.15, warning_margin=0.20, critical_margin=0.30, warning_volume=100, critical_volume=300, p_value=0.001, prior=0.50)


def test_each_preset_scales_the_margins_and_the_p_value():
    assert preset_config(CFG, "balanced") is CFG
    sensitive, strict = preset_config(CFG, "sensitive"), preset_config(CFG, "strict")
    assert (sensitive.margin, sensitive.warning_margin, sensitive.critical_margin, sensitive.p_value) == (0.1125, 0.15, 0.225, 0.01)
    assert (strict.margin, strict.warning_margin, strict.critical_margin, strict.p_value) == (0.225, 0.3, 0.45, 0.0001)
    assert preset_config(rule_config(p_value=0.02), "sensitive").p_value == 0.05
    with pytest.raises(InvalidPreset, match="preset must be one of sensitive, balanced, strict, got 'loud'"):
        preset_config(CFG, "loud")


def test_the_same_rise_is_critical_when_sensitive_a_warning_when_balanced_and_a_watch_when_strict():
    # 25 points above a 20% baseline on 600 posts.
    seen = Observation(100, WindowStats(0, 4, 200, 90, 0.0), WindowStats(0, 14, 600, 270, 0.0), Baseline(0.2, 40.0, "trailing", 10_000))
    configs = ScopeConfigs(CFG)
    configs.chosen = {"term:delay": "sensitive", "term:refund": "strict"}
    outcome = {scope: decide(Signal.NEGATIVE_RATE, seen, None, configs(scope)) for scope in ("term:delay", "all", "term:refund")}
    assert {scope: (d.action, d.severity) for scope, d in outcome.items()} == {
        "term:delay": (Action.OPEN, Severity.CRITICAL), "all": (Action.OPEN, Severity.WARNING), "term:refund": (Action.OPEN, Severity.WATCH),
    }
