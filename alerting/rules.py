"""The escalation rule: a pure function from window statistics and the open incident (if
any) to a decision. Swappable: the worker only relies on ``evaluate``'s signature."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from scipy.stats import binom

from stream.windows import WindowStats


class Severity(str, Enum):
    WARNING = "warning"
    CRITICAL = "critical"


class Action(str, Enum):
    OPEN = "opened"
    ESCALATE = "escalated"
    RESOLVE = "resolved"


@dataclass(frozen=True)
class RuleConfig:
    window_min: int = 15
    baseline_min: int = 60
    min_volume: int = 30
    margin: float = 0.15
    critical_margin: float = 0.30
    floor: float = 0.20
    # One-sided binomial test: the window's negatives must be this unlikely under the
    # baseline rate, so a 40-post scope does not page on noise.
    p_value: float = 0.001
    # Baseline to assume while a scope has too little history. None: do not alert on a
    # scope until it has history (a freshly watched term is not an incident).
    prior: float | None = None

    def __post_init__(self) -> None:
        if not 0 < self.margin <= self.critical_margin:
            raise ValueError("need 0 < margin <= critical_margin")
        if not 0 < self.p_value < 1:
            raise ValueError("need 0 < p_value < 1")


@dataclass(frozen=True)
class OpenIncident:
    severity: Severity
    baseline: float


@dataclass(frozen=True)
class Decision:
    action: Action
    severity: Severity
    baseline: float


# Rates are ratios of counts: 35/100 - 0.20 must count as a rise of 0.15, not 0.1499...
_EPS = 1e-9


def baseline_rate(baseline: WindowStats, cfg: RuleConfig) -> float | None:
    """The trailing rate before the alert window, never below the floor; with too few
    posts to trust it, the configured prior (None if there is none)."""
    if baseline.total < cfg.min_volume:
        return None if cfg.prior is None else max(cfg.prior, cfg.floor)
    return max(baseline.rate, cfg.floor)


def p_value(window: WindowStats, base: float) -> float:
    """P(at least this many negatives | each post negative with probability ``base``)."""
    return float(binom.sf(window.negative - 1, window.total, base))


def evaluate(window: WindowStats, baseline: WindowStats, incident: OpenIncident | None, cfg: RuleConfig) -> Decision | None:
    if incident is None:
        base = baseline_rate(baseline, cfg)
        if (
            base is not None
            and window.total >= cfg.min_volume
            and window.rate - base >= cfg.margin - _EPS
            and p_value(window, base) <= cfg.p_value
        ):
            severity = Severity.CRITICAL if window.rate - base >= cfg.critical_margin - _EPS else Severity.WARNING
            return Decision(Action.OPEN, severity, base)
        return None
    # While an incident is open its baseline stays the one it opened against: the spike
    # itself flows into the trailing window and would otherwise "resolve" it.
    rise = window.rate - incident.baseline
    if rise < cfg.margin / 2 - _EPS:
        return Decision(Action.RESOLVE, incident.severity, incident.baseline)
    if (
        incident.severity is Severity.WARNING
        and rise >= cfg.critical_margin - _EPS
        and window.total >= cfg.min_volume
        and p_value(window, incident.baseline + cfg.margin) <= cfg.p_value
    ):
        return Decision(Action.ESCALATE, Severity.CRITICAL, incident.baseline)
    return None
