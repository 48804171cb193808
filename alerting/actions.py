"""What responders do about an incident (acknowledge, snooze, resolve by hand, mark a
false alarm, add a note), and re-notification of critical incidents nobody took.

Each action is one more announcement of the incident: the incident record, its history
entry and the outbox entries for every sink change in the one compare-and-set that every
other change uses (``IncidentStore.commit``), so an action racing the rule (or another
responder) is either applied on top of the latest state or retried on it, and each
announcement reaches each sink once. Re-notification is decided on every worker's timer
under the same compare-and-set, so exactly one worker re-announces."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from alerting.alert import Alert, iso, now_iso
from alerting.feedback import scrub_comment
from alerting.incidents import Incident, IncidentHistory, IncidentStore, Response
from alerting.rules import Baseline, RuleConfig, Severity, Signal, resolve_by_hand
from counting.counters import Counters
from counting.windows import minute_of

log = logging.getLogger(__name__)

# What a request names -> the announcement's action.
ACTIONS = {"acknowledge": "acknowledged", "snooze": "snoozed", "resolve": "resolved", "false_alarm": "false_alarm", "note": "note"}
MAX_SNOOZE_MIN = 7 * 24 * 60
MAX_TEXT_CHARS = 500
# Racing changes are retried on the state that won, this many times at most.
ATTEMPTS = 5


class ActionError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class ActionRequest:
    action: str
    minutes: float | None = None
    reason: str = ""
    text: str = ""


class IncidentActions:
    def __init__(self, store: IncidentStore, history: IncidentHistory, counters: Counters, cfg: RuleConfig, *, clock: Callable[[], float] = time.time):
        self.store = store
        self.history = history
        self.counters = counters
        self.cfg = cfg
        self.clock = clock

    async def apply(self, incident_id: str, request: ActionRequest, *, actor: str) -> Alert:
        """Apply ``request`` by ``actor`` and return its announcement; ActionError (with
        an HTTP status) when it cannot be done."""
        if request.action not in ACTIONS:
            raise ActionError(422, f"action must be one of {', '.join(ACTIONS)}, got {request.action!r}")
        announced = (await self.history.alerts([incident_id]))[incident_id]
        if not announced:
            raise ActionError(404, f"no incident {incident_id!r} in the history (unknown, or older than BADBUZZ_COUNTER_TTL_S)")
        signal, scope = Signal(announced[-1].signal), announced[-1].scope
        for _ in range(ATTEMPTS):
            current = await self.store.get(scope, signal)
            if current is None or current.id != incident_id:
                raise ActionError(409, f"incident {incident_id} is over: a newer incident on {scope} replaced it, or it expired")
            last = (await self.history.alerts([incident_id]))[incident_id][-1]
            new, alert = await self._apply(current, last, request, actor)
            if await self.store.commit(current, new, alert, now_ms=self._now_ms()):
                log.info("incident %s %s by %s", incident_id, alert.action, actor)
                return alert
        raise ActionError(409, f"incident {incident_id} kept changing while this was applied: try again")

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def _apply(self, current: Incident, last: Alert, request: ActionRequest, actor: str) -> tuple[Incident, Alert]:
        now_ms = self._now_ms()
        action, response, episode = request.action, current.response, current.episode
        reason, text = _text("reason", request.reason), _text("text", request.text)
        note, snoozed_until = "", ""
        if action in ("acknowledge", "snooze", "resolve") and not current.is_open:
            raise ActionError(409, f"incident {current.id} is resolved: there is nothing to {action.replace('_', ' ')}")
        if action == "acknowledge":
            if response.acknowledged_by:
                raise ActionError(409, f"incident {current.id} was acknowledged by {response.acknowledged_by} at {iso(response.acknowledged_ms)}")
            response = replace(response, acknowledged_by=actor, acknowledged_ms=now_ms)
            note = text
        elif action == "snooze":
            if request.minutes is None or not 0 < request.minutes <= MAX_SNOOZE_MIN:
                raise ActionError(422, f"minutes: snooze for more than 0 and at most {MAX_SNOOZE_MIN} minutes")
            until = now_ms + int(request.minutes * 60_000)
            response, snoozed_until, note = replace(response, snoozed_until_ms=until), iso(until), text
        elif action == "resolve":
            episode, note = await self._resolved(current), text
        elif action == "false_alarm":
            if not reason:
                raise ActionError(422, "reason: say why it is a false alarm")
            response, note = replace(response, false_alarm=reason), reason
            if current.is_open:
                episode = await self._resolved(current)
        else:
            if not text:
                raise ActionError(422, "text: the note is empty")
            note = text
        new = Incident(current.id, current.signal, current.scope, current.seq + 1, episode, response)
        alert = replace(
            last, alert_id=new.alert_id(), seq=new.seq, action=ACTIONS[action], severity=current.severity.value,
            actor=actor, note=note, snoozed_until=snoozed_until, muted_by="", created_at=now_iso(),
        )
        return new, alert

    async def _resolved(self, current: Incident):
        """The episode resolved now, its baseline raised to the scope's current level."""
        if current.signal is Signal.MODEL_QUALITY:
            return resolve_by_hand(current.episode, minute_of(self._now_ms()), Baseline(None, None))
        minute = minute_of(await self.counters.watermark_ms() or self._now_ms())
        window = await self.counters.window(current.scope, minute, self.cfg.window_min)
        level = Baseline(window.rate if window.total else None, window.total / self.cfg.window_min)
        return resolve_by_hand(current.episode, minute, level)


def _text(name: str, value: str) -> str:
    if len(value) > MAX_TEXT_CHARS:
        raise ActionError(422, f"{name}: at most {MAX_TEXT_CHARS} characters")
    # Announcements go to Slack and Kafka: handles and links are scrubbed as in feedback.
    return scrub_comment(value.strip()) if value.strip() else ""


def wants_renotification(incident: Incident, *, now_ms: int, every_ms: int) -> bool:
    """An open critical incident nobody acknowledged, not snoozed, that last paged at
    least ``every_ms`` ago."""
    r: Response = incident.response
    last = r.notified_ms or incident.opened_ms
    return (
        incident.is_open
        and incident.severity is Severity.CRITICAL
        and not r.acknowledged_by
        and r.snoozed_until_ms <= now_ms
        and now_ms - last >= every_ms
    )


class Renotifier:
    def __init__(
        self, store: IncidentStore, history: IncidentHistory, keys: Sequence[tuple[Signal, str]], *, every_min: float,
        clock: Callable[[], float] = time.time,
    ):
        self.store = store
        self.history = history
        self.keys = list(keys)
        self.every_ms = int(every_min * 60_000)
        self.clock = clock

    async def check(self) -> list[Alert]:
        """Re-announce every incident that wants it (nothing when disabled)."""
        if self.every_ms <= 0:
            return []
        now_ms = int(self.clock() * 1000)
        due = [i for i in (await self.store.get_many(self.keys)).values() if i is not None and wants_renotification(i, now_ms=now_ms, every_ms=self.every_ms)]
        announced = []
        for incident in due:
            last = (await self.history.alerts([incident.id]))[incident.id]
            if not last:
                continue
            new = replace(incident, seq=incident.seq + 1)
            alert = replace(
                last[-1], alert_id=new.alert_id(), seq=new.seq, action="renotified", severity=incident.severity.value,
                actor="", note="", snoozed_until="", muted_by="", created_at=now_iso(),
            )
            # Losing the compare-and-set means another worker re-announced it, or it changed.
            if await self.store.commit(incident, new, alert, now_ms=now_ms):
                log.warning("incident %s re-notified: critical and not acknowledged", incident.id)
                announced.append(alert)
        return announced
