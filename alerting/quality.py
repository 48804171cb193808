"""How good the alerts are, from the incident history (``P:incident-log``): how long
responders take to acknowledge, which signal and scope raise false alarms, how many
incidents a week, and how many announcements silences muted.

An incident counts when its first recorded announcement (its opening) falls in the
period; a silenced notification counts when the muted announcement was made in it.
Times are the announcements' ``created_at`` (whole seconds)."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from alerting.alert import Alert
from alerting.incidents import IncidentHistory

WEEK_MS = 7 * 24 * 3_600_000
# Every incident the history still holds (it keeps them for the counters' retention).
HISTORY_LIMIT = 100_000


def _ms(created_at: str) -> int:
    return int(datetime.fromisoformat(created_at.replace("Z", "+00:00")).timestamp() * 1000)


@dataclass(frozen=True)
class ScopeQuality:
    signal: str
    scope: str
    incidents: int
    false_alarms: int

    @property
    def false_alarm_ratio(self) -> float:
        return self.false_alarms / self.incidents


@dataclass(frozen=True)
class AlertQuality:
    since_ms: int
    until_ms: int
    incidents: int
    # Seconds from the opening to the first acknowledgement, per acknowledged incident, ascending.
    ack_seconds: list[float] = field(default_factory=list)
    scopes: list[ScopeQuality] = field(default_factory=list)
    silenced: int = 0

    @property
    def weeks(self) -> float:
        return (self.until_ms - self.since_ms) / WEEK_MS

    @property
    def incidents_per_week(self) -> float:
        return self.incidents / self.weeks if self.weeks > 0 else 0.0

    @property
    def false_alarms(self) -> int:
        return sum(s.false_alarms for s in self.scopes)

    def ack_quantile(self, q: float) -> float | None:
        """The nearest-rank quantile of the times to acknowledge (None: none acknowledged)."""
        if not self.ack_seconds:
            return None
        rank = max(1, -(-q * len(self.ack_seconds) // 1))
        return self.ack_seconds[int(rank) - 1]

    def to_dict(self) -> dict:
        acks = self.ack_seconds
        return {
            "incidents": self.incidents,
            "incidents_per_week": round(self.incidents_per_week, 3),
            "acknowledged": len(acks),
            "ack_seconds": {
                "mean": sum(acks) / len(acks) if acks else None, "median": self.ack_quantile(0.5), "p90": self.ack_quantile(0.9),
                "max": acks[-1] if acks else None,
            },
            "false_alarms": self.false_alarms,
            "false_alarm_ratio": [
                {"signal": s.signal, "scope": s.scope, "incidents": s.incidents, "false_alarms": s.false_alarms, "ratio": s.false_alarm_ratio}
                for s in self.scopes
            ],
            "silenced_notifications": self.silenced,
        }


def alert_quality(histories: Iterable[Sequence[Alert]], *, since_ms: int, until_ms: int) -> AlertQuality:
    """The figures over ``[since_ms, until_ms]`` from each incident's announcements (oldest first)."""
    incidents, silenced = 0, 0
    acks: list[float] = []
    tally: dict[tuple[str, str], list[int]] = {}
    for alerts in histories:
        if not alerts:
            continue
        silenced += sum(1 for a in alerts if a.muted_by and since_ms <= _ms(a.created_at) <= until_ms)
        opened_ms = _ms(alerts[0].created_at)
        if not since_ms <= opened_ms <= until_ms:
            continue
        incidents += 1
        counts = tally.setdefault((alerts[0].signal, alerts[0].scope), [0, 0])
        counts[0] += 1
        counts[1] += any(a.action == "false_alarm" for a in alerts)
        acked = next((a for a in alerts if a.action == "acknowledged"), None)
        if acked is not None:
            acks.append((_ms(acked.created_at) - opened_ms) / 1000)
    scopes = [ScopeQuality(signal, scope, n, false) for (signal, scope), (n, false) in sorted(tally.items())]
    return AlertQuality(since_ms, until_ms, incidents, sorted(acks), scopes, silenced)


async def read_alert_quality(history: IncidentHistory, *, since_ms: int, until_ms: int) -> AlertQuality:
    """``alert_quality`` over the incidents the history holds that were announced in the period."""
    ids = await history.ids(since_ms=since_ms, limit=HISTORY_LIMIT)
    return alert_quality((await history.alerts(ids)).values(), since_ms=since_ms, until_ms=until_ms)
