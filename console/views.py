"""What the console reads and shows, apart from the web wiring: incidents from their
history, the live chart's numbers (one Redis read per scope and length every couple of
seconds, however many people watch), and scoring off the event loop."""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from alerting.alert import Alert, iso
from alerting.incidents import IncidentHistory, IncidentStore
from alerting.rules import RuleConfig, Signal
from alerting.silences import Silences
from counting.counters import Counters
from stream.dashboard import SIGNALS, ChartCache, build_chart, period_incidents

# A chart is rebuilt at most this often per scope and length, whoever asks.
# Incidents read from the history for one chart, latest announced first.
CHART_HISTORY_LIMIT = 500
MISSING_TEXT = "some example posts have no text: a text is kept (masked) for BADBUZZ_COUNTER_TTL_S after its post was counted"
STATES = ("open", "resolved")
SIGNAL_NAMES = ("negative_rate", "volume", "model_quality")
SEVERITIES = ("watch", "warning", "critical")


class BadQuery(ValueError):
    pass


def parse_since(raw: str | None) -> int | None:
    """Epoch milliseconds or an ISO 8601 time (UTC when it names no zone)."""
    if raw is None or raw == "":
        return None
    if raw.isdigit():
        return int(raw)
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise BadQuery(f"since must be epoch milliseconds or an ISO 8601 time, got {raw!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _choice(name: str, raw: str | None, allowed: tuple[str, ...]) -> str | None:
    if raw is None or raw == "":
        return None
    if raw not in allowed:
        raise BadQuery(f"{name} must be one of {', '.join(allowed)}, got {raw!r}")
    return raw


@dataclass(frozen=True)
class IncidentFilter:
    scope: str | None = None
    signal: str | None = None
    severity: str | None = None
    state: str | None = None
    since_ms: int | None = None

    @classmethod
    def parse(cls, query) -> IncidentFilter:
        return cls(
            scope=query.get("scope") or None,
            signal=_choice("signal", query.get("signal"), SIGNAL_NAMES),
            severity=_choice("severity", query.get("severity"), SEVERITIES),
            state=_choice("state", query.get("state"), STATES),
            since_ms=parse_since(query.get("since")),
        )

    def keeps(self, summary: dict) -> bool:
        return all(
            wanted is None or summary[field] == wanted
            for field, wanted in (("scope", self.scope), ("signal", self.signal), ("severity", self.severity), ("state", self.state))
        )


# Announcements that leave the incident's state (open or resolved) as it was.
_KEEP_STATE = ("acknowledged", "snoozed", "note", "renotified")


def summarise(incident_id: str, alerts: list[Alert]) -> dict:
    """The incident as its announcements tell it: the headline and numbers of the rule's
    latest announcement, the state after the latest that changed it, and what
    responders did since it last (re)opened."""
    first, last = alerts[0], alerts[-1]
    seen = next((a for a in reversed(alerts) if not a.is_response), first)
    state = next((a for a in reversed(alerts) if a.action not in _KEEP_STATE), first)
    since = max((i for i, a in enumerate(alerts) if a.action in ("opened", "reopened")), default=0)
    acknowledged = next((a for a in alerts[since:] if a.action == "acknowledged"), None)
    false_alarm = next((a for a in reversed(alerts) if a.action == "false_alarm"), None)
    return {
        "id": incident_id,
        "signal": last.signal,
        "scope": last.scope,
        "severity": last.severity,
        "state": "resolved" if state.action in ("resolved", "false_alarm") else "open",
        "opened": first.created_at,
        "last_action": last.action,
        "last_announced": last.created_at,
        "announcements": len(alerts),
        "headline": seen.headline,
        "numbers": seen.numbers,
        "acknowledged_by": acknowledged.actor if acknowledged else None,
        "acknowledged_at": acknowledged.created_at if acknowledged else None,
        "false_alarm": false_alarm.note if false_alarm else None,
        "muted": sum(1 for a in alerts if a.muted_by),
    }


class Reader:
    def __init__(self, counters: Counters, incidents: IncidentStore, history: IncidentHistory, cfg: RuleConfig, scopes: list[str],
                 *, silences: Silences, future_tolerance_ms: int = 0, clock=time.monotonic):
        self.counters = counters
        self.incidents = incidents
        self.history = history
        self.silences = silences
        self.cfg = cfg
        self.scopes = scopes
        self.future_tolerance_ms = future_tolerance_ms
        self._charts = ChartCache(self._build_chart, clock=clock)

    async def incident_list(self, wanted: IncidentFilter, *, limit: int = 200) -> list[dict]:
        ids = await self.history.ids(since_ms=wanted.since_ms, limit=limit)
        found = await self.history.alerts(ids)
        summaries = [summarise(i, alerts) for i, alerts in found.items() if alerts]
        return [s for s in summaries if wanted.keeps(s)]

    async def incident(self, incident_id: str) -> dict | None:
        alerts = (await self.history.alerts([incident_id]))[incident_id]
        if not alerts:
            return None
        latest_drivers = next((a.drivers for a in reversed(alerts) if a.drivers), [])
        post_ids = list(dict.fromkeys(p for a in alerts for p in a.example_post_ids))
        shown = await self.counters.shown(post_ids)
        examples = []
        for post_id in post_ids:
            prediction = await self.counters.prediction(post_id)
            kept = shown[post_id]
            examples.append({
                "post_id": post_id,
                "text": None if kept is None else kept.text,
                "url": None if kept is None else kept.url,
                "p_negative": None if prediction is None else round(prediction.score, 6),
                "negative": None if prediction is None else prediction.negative,
                "model_version": None if prediction is None else prediction.model_version,
            })
        last = alerts[-1]
        now_ms = int(time.time() * 1000)
        current = await self.incidents.get(last.scope, Signal(last.signal))
        snoozed = current.response.snoozed_until_ms if current is not None and current.id == incident_id else 0
        return {
            **summarise(incident_id, alerts),
            "snoozed_until": iso(snoozed) if snoozed > now_ms else None,
            "silences": [s.to_dict() for s in await self.silences.current(now_ms=now_ms) if s.covers(last)],
            "drivers": latest_drivers,
            "examples": examples,
            "missing": [MISSING_TEXT] if any(e["text"] is None for e in examples) else [],
            "alerts": [a.to_dict() for a in alerts],
        }

    async def windows(self, scope: str, minutes: int, model: str) -> dict:
        return await self._charts.get(scope, minutes, model)

    async def _build_chart(self, scope: str, minutes: int, model: str) -> dict:
        async def period(end: int) -> list:
            found = await self.incidents.get_many([(signal, scope) for signal in SIGNALS])
            first = end - minutes + 1
            # Announced (wall clock) no earlier than the event minute decided, less what the
            # feed may run ahead of the clock: every incident of the period is among these.
            ids = await self.history.ids(since_ms=first * 60_000 - self.future_tolerance_ms, limit=CHART_HISTORY_LIMIT)
            return period_incidents(
                [incident for incident in found.values() if incident is not None], await self.history.alerts(ids),
                scope=scope, first_minute=first, end_minute=end,
            )

        return await build_chart(self.counters, scope=scope, scopes=self.scopes, minutes=minutes, cfg=self.cfg, model=model, incidents_for=period)


def when(ms_or_iso: int | str | None) -> str:
    if ms_or_iso is None:
        return "-"
    return iso(ms_or_iso) if isinstance(ms_or_iso, int) else ms_or_iso
