"""Alert-quality figures from a known incident history: times to acknowledge, false
alarms per signal and scope, incidents a week, silenced announcements, and how the report
and Prometheus show them."""
from alerting.alert import Alert, iso
from alerting.quality import alert_quality
from badbuzz.report import quality_lines
from console.quality import exposition

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
S, H, DAY = 1000, 3_600_000, 86_400_000


def announce(incident_id: str, seq: int, action: str, at_ms: int, *, signal="negative_rate", scope="all", muted_by="") -> Alert:
    return Alert(f"{incident_id}.{seq}", incident_id, seq, signal, action, "critical", scope, "a", "b", 15,
                 actor="rita" if action in ("acknowledged", "false_alarm", "note") else "", muted_by=muted_by, created_at=iso(at_ms))


def history(T0: int = T0) -> list[list[Alert]]:  # noqa: N803 - the period's start, as above
    a = [announce("a", 1, "opened", T0 + DAY), announce("a", 2, "renotified", T0 + DAY + 60 * S),
         announce("a", 3, "acknowledged", T0 + DAY + 120 * S), announce("a", 4, "resolved", T0 + DAY + H)]
    b = [announce("b", 1, "opened", T0 + 2 * DAY), announce("b", 2, "false_alarm", T0 + 2 * DAY + 300 * S)]
    c = [announce("c", 1, "opened", T0 + 3 * DAY, signal="volume", scope="term:delay", muted_by="s1"),
         announce("c", 2, "renotified", T0 + 3 * DAY + 30 * S, signal="volume", scope="term:delay", muted_by="s1"),
         announce("c", 3, "acknowledged", T0 + 3 * DAY + 600 * S, signal="volume", scope="term:delay"),
         announce("c", 4, "acknowledged", T0 + 3 * DAY + 900 * S, signal="volume", scope="term:delay")]
    # Opened before the period: not counted, though its muted announcement in the period is.
    d = [announce("d", 1, "opened", T0 - H), announce("d", 2, "acknowledged", T0 + 10 * S), announce("d", 3, "note", T0 + 20 * S, muted_by="s2")]
    return [a, b, c, d, []]


def test_the_figures_match_the_actions_taken():
    q = alert_quality(history(), since_ms=T0, until_ms=T0 + 14 * DAY)
    assert (q.incidents, q.incidents_per_week, q.ack_seconds, q.silenced, q.false_alarms) == (3, 1.5, [120.0, 600.0], 3, 1)
    assert q.to_dict() == {
        "incidents": 3, "incidents_per_week": 1.5, "acknowledged": 2,
        "ack_seconds": {"mean": 360.0, "median": 120.0, "p90": 600.0, "max": 600.0},
        "false_alarms": 1,
        "false_alarm_ratio": [
            {"signal": "negative_rate", "scope": "all", "incidents": 2, "false_alarms": 1, "ratio": 0.5},
            {"signal": "volume", "scope": "term:delay", "incidents": 1, "false_alarms": 0, "ratio": 0.0},
        ],
        "silenced_notifications": 3,
    }
    empty = alert_quality([], since_ms=T0, until_ms=T0 + DAY)
    assert empty.to_dict()["ack_seconds"] == {"mean": None, "median": None, "p90": None, "max": None}
    assert (empty.incidents, empty.scopes) == (0, [])


def test_the_report_and_prometheus_show_them():
    q = alert_quality(history(), since_ms=T0, until_ms=T0 + 14 * DAY)
    assert quality_lines(q.to_dict()) == [
        "3 incident(s) opened (1.5 a week); 2 acknowledged, time to acknowledge median 120 s, 90th percentile 600 s, longest 600 s; "
        "1 false alarm(s); 3 notification(s) silenced.",
        "",
        "| signal | scope | incidents | false alarms | share |",
        "|---|---|---|---|---|",
        "| negative_rate | all | 2 | 1 | 50.0% |",
        "| volume | term:delay | 1 | 0 | 0.0% |",
    ]
    text = exposition(q).decode()
    for line in (
        "badbuzz_incident_ack_seconds_count 2.0", "badbuzz_incident_ack_seconds_sum 720.0",
        'badbuzz_false_alarm_ratio{scope="all",signal="negative_rate"} 0.5', 'badbuzz_false_alarm_ratio{scope="term:delay",signal="volume"} 0.0',
        "badbuzz_incidents_per_week 1.5", "badbuzz_incidents 3.0", "badbuzz_silenced_notifications 3.0",
    ):
        assert line in text.splitlines(), (line, text)
