"""The live chart shades every incident of its period, past ones read back from their
announcements, not only each signal's latest."""
from __future__ import annotations

from alerting.alert import Alert, iso
from alerting.incidents import Incident
from alerting.rules import Baseline, Episode, Severity, Signal
from stream.dashboard import incident_from_history, period_incidents

MINUTE = 29_000_000


def announce(incident_id: str, seq: int, action: str, minute: int, *, signal="negative_rate", scope="term:delay", severity="warning") -> Alert:
    return Alert(
        alert_id=f"{incident_id}.{seq}", incident_id=incident_id, seq=seq, signal=signal, action=action, severity=severity, scope=scope,
        window_start=iso((minute - 14) * 60_000), window_end=iso((minute + 1) * 60_000), window_minutes=15,
        baseline=0.2, baseline_source="trailing", expected_volume=150.0,
    )


def test_an_incident_is_told_from_its_announcements():
    alerts = [
        announce("r1", 1, "opened", MINUTE),
        announce("r1", 2, "escalated", MINUTE + 4, severity="critical"),
        announce("r1", 3, "resolved", MINUTE + 9, severity="critical"),
    ]
    assert incident_from_history("r1", alerts) == Incident(
        "r1", Signal.NEGATIVE_RATE, "term:delay", 3, Episode(Severity.CRITICAL, Baseline(0.2, 10.0, "trailing"), MINUTE, MINUTE + 9)
    )
    assert incident_from_history("r1", alerts[:2]).episode.resolved_minute is None
    assert incident_from_history("m1", [announce("m1", 1, "opened", MINUTE, signal="model_quality", scope="model")]) is None


def test_every_incident_of_the_scope_and_period_is_kept_once():
    current = incident_from_history("r3", [announce("r3", 1, "opened", MINUTE + 50)])
    history = {
        "r3": [announce("r3", 1, "opened", MINUTE + 50)],
        "r2": [announce("r2", 1, "opened", MINUTE + 20), announce("r2", 2, "resolved", MINUTE + 30)],
        "v1": [announce("v1", 1, "opened", MINUTE + 25, signal="volume")],
        "old": [announce("old", 1, "opened", MINUTE - 90), announce("old", 2, "resolved", MINUTE - 70)],
        "edge": [announce("edge", 1, "opened", MINUTE - 30), announce("edge", 2, "resolved", MINUTE)],
        "other": [announce("other", 1, "opened", MINUTE + 20, scope="all")],
    }
    found = period_incidents([current], history, scope="term:delay", first_minute=MINUTE, end_minute=MINUTE + 59)
    assert [(i.id, i.episode.opened_minute, i.episode.resolved_minute) for i in found] == [
        ("edge", MINUTE - 30, MINUTE), ("r2", MINUTE + 20, MINUTE + 30), ("v1", MINUTE + 25, None), ("r3", MINUTE + 50, None),
    ]
    assert found[-1] is current
