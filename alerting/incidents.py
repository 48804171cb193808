"""Incident episodes per (signal, scope), in Redis so that every worker sees the same
episode and exactly one of them announces each change.

A change is a compare-and-set on the incident's id and sequence number, done by one Lua
script that also puts the announcement into the outbox: two workers that decide the
same change race on the CAS, the loser's alert is never queued, and a worker that dies
after the change cannot leave it unannounced. A resolved incident stays in Redis through
its cool-down, so a re-trigger reopens the same incident id.

The same script keeps the history (``IncidentHistory``; ``P`` is the Redis prefix as a hash tag, ``{prefix}``, so on Redis Cluster all of it shares one slot):
``P:incident-log`` (incident ids
scored by their latest announcement, ms) and ``P:incident-log:<incident id>`` (every
announcement's alert JSON, oldest first), both kept for the counters' retention."""
from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime

import redis.asyncio as aioredis

from alerting.alert import Alert, iso
from alerting.outbox import Outbox
from alerting.rules import Action, Baseline, Decision, Episode, Severity, Signal, advance
from alerting.silences import Silences
from config.connections import shared_keyspace

log = logging.getLogger(__name__)

_TRANSITION = """
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '' then
  if current then return 0 end
else
  if not current then return 0 end
  local state = cjson.decode(current)
  if state['id'] ~= ARGV[1] or state['seq'] ~= tonumber(ARGV[2]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[3], 'EX', tonumber(ARGV[4]))
if redis.call('SET', KEYS[2], ARGV[5], 'NX', 'EX', tonumber(ARGV[6])) then
  redis.call('ZADD', KEYS[3], ARGV[7], ARGV[9])
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', tonumber(ARGV[7]) - tonumber(ARGV[4]) * 1000)
  redis.call('EXPIRE', KEYS[3], tonumber(ARGV[4]))
  redis.call('RPUSH', KEYS[4], ARGV[5])
  redis.call('EXPIRE', KEYS[4], tonumber(ARGV[4]))
  for k = 5, #KEYS do redis.call('ZADD', KEYS[k], 'NX', ARGV[7], ARGV[8]) end
end
return 1
"""

# Announcements that page people: re-notification counts from the latest of them.
NOTIFYING = ("opened", "escalated", "reopened", "renotified")

_SIGNAL_SLUG = {Signal.NEGATIVE_RATE: "rate", Signal.VOLUME: "volume", Signal.MODEL_QUALITY: "model"}


@dataclass(frozen=True)
class Response:
    """What people did about an incident (``alerting.actions``), kept with it."""

    acknowledged_by: str = ""
    acknowledged_ms: int = 0
    snoozed_until_ms: int = 0
    false_alarm: str = ""  # the reason, once someone marked it a false alarm
    notified_ms: int = 0  # when it last paged (opened, escalated, reopened, re-notified)


@dataclass(frozen=True)
class Incident:
    id: str
    signal: Signal
    scope: str
    seq: int
    episode: Episode
    response: Response = field(default_factory=Response)

    def alert_id(self) -> str:
        return f"{self.id}.{self.seq}"

    @property
    def severity(self) -> Severity:
        return self.episode.severity

    @property
    def baseline(self) -> float | None:
        """The frozen baseline rate the episode is measured against."""
        return self.episode.baseline.rate

    @property
    def opened_ms(self) -> int:
        return self.episode.opened_minute * 60_000

    @property
    def is_open(self) -> bool:
        return self.episode.is_open


def new_incident_id(signal: Signal, scope: str, minute: int) -> str:
    stamp = datetime.fromtimestamp(minute * 60, tz=UTC).strftime("%Y%m%dT%H%M")
    slug = "".join(c if c.isalnum() else "-" for c in scope.removeprefix("term:")).strip("-")
    return f"{_SIGNAL_SLUG[signal]}-{slug}-{stamp}-{uuid.uuid4().hex[:8]}"


def model_quality_alert(
    incident: Incident, decision: Decision, *, start_ms: int, end_ms: int, window_minutes: int, model: str, model_version: str, **details: object
) -> Alert:
    """The alert for a model-quality incident (wrong-prediction feedback or drift): the
    shared fields, plus the ``details`` that say what tripped it."""
    return Alert(
        alert_id=incident.alert_id(),
        incident_id=incident.id,
        seq=incident.seq,
        signal=Signal.MODEL_QUALITY.value,
        action=decision.action.value,
        severity=decision.severity.value,
        scope=incident.scope,
        window_start=iso(start_ms),
        window_end=iso(end_ms),
        window_minutes=window_minutes,
        model=model,
        model_version=model_version,
        **details,
    )


def next_incident(current: Incident | None, signal: Signal, scope: str, decision: Decision, minute: int) -> Incident:
    """The incident after ``decision`` (a new id when an episode opens afresh)."""
    if decision.action is Action.OPEN:
        return Incident(new_incident_id(signal, scope, minute), signal, scope, 1, advance(None, decision, minute))
    assert current is not None
    # A reopened episode pages afresh: the earlier acknowledgement and snooze were for the rise that resolved.
    response = Response(false_alarm=current.response.false_alarm) if decision.action is Action.REOPEN else current.response
    return Incident(current.id, signal, scope, current.seq + 1, advance(current.episode, decision, minute), response)


class IncidentStore:
    def __init__(
        self, redis: aioredis.Redis, *, prefix: str, ttl_s: int, outbox: Outbox | None = None,
        on_announced: Callable[[Alert], None] | None = None, silences: Silences | None = None,
    ):
        """Without an outbox the store only reads (dashboards, metrics). Every change is
        announced here, whichever path decided it (after a batch, on the timer, from
        feedback or drift, by a responder), so ``on_announced`` sees each alert this
        process queued once. An announcement an active silence matches is recorded in the
        history (with ``muted_by``) but queued for no sink."""
        self.redis = redis
        self.prefix = shared_keyspace(prefix)
        self.ttl_s = ttl_s
        self.outbox = outbox
        self.on_announced = on_announced
        self.silences = silences
        self._transition = redis.register_script(_TRANSITION)

    def _key(self, signal: Signal, scope: str) -> str:
        return f"{self.prefix}:incident:{signal.value}:{scope}"

    async def get(self, scope: str, signal: Signal = Signal.NEGATIVE_RATE) -> Incident | None:
        """The scope's latest incident for ``signal``: open, or resolved and kept through
        its cool-down (``is_open`` tells which). The rule needs the resolved one too."""
        return (await self.get_many([(signal, scope)]))[(signal, scope)]

    async def get_many(self, keys: Sequence[tuple[Signal, str]]) -> dict[tuple[Signal, str], Incident | None]:
        raws = await self.redis.mget([self._key(signal, scope) for signal, scope in keys]) if keys else []
        return {key: None if raw is None else _load(raw) for key, raw in zip(keys, raws)}

    async def commit(self, current: Incident | None, new: Incident, alert: Alert, *, now_ms: int) -> bool:
        """Store ``new`` and queue ``alert`` if the incident is still ``current``; False
        when another worker changed it first (then nothing is queued)."""
        if self.outbox is None:
            raise RuntimeError("this incident store was made without an outbox: it cannot announce changes")
        # A fresh episode after a cooled-down one replaces that incident: the CAS then
        # expects the old one, exactly as for any other change.
        expected_id, expected_seq = ("", 0) if current is None else (current.id, current.seq)
        if alert.action in NOTIFYING:
            new = replace(new, response=replace(new.response, notified_ms=now_ms))
        # A silence created between this read and the script does not mute this one
        # announcement: silences are set ahead of the noise they are for.
        silence = None if self.silences is None else await self.silences.matching(alert, now_ms=now_ms)
        sinks = self.outbox.sinks
        if silence is not None:
            alert, sinks = replace(alert, muted_by=silence.id), []
        keys = self.outbox.keys
        history = HistoryKeys(self.prefix)
        ok = await self._transition(
            keys=[
                self._key(new.signal, new.scope), keys.alert(alert.alert_id), history.index, history.alerts(new.id),
                *(keys.queue(s) for s in sinks),
            ],
            args=[expected_id, expected_seq, _dump(new), self.ttl_s, alert.to_json(), self.outbox.cfg.retention_s, now_ms, alert.alert_id, new.id],
        )
        if ok:
            self.outbox.notify()
            if self.on_announced is not None:
                # Queued for good by now: a failing observer must not stop the caller
                # from deciding the other scopes.
                try:
                    self.on_announced(alert)
                except Exception:
                    log.exception("observer of announced alert %s failed", alert.alert_id)
        return bool(ok)


class HistoryKeys:
    """Keys under an already tagged ``prefix`` (``shared_keyspace``)."""

    def __init__(self, prefix: str):
        self.index = f"{prefix}:incident-log"
        self._prefix = prefix

    def alerts(self, incident_id: str) -> str:
        return f"{self._prefix}:incident-log:{incident_id}"


class IncidentHistory:
    """Past and open incidents, read back from what ``IncidentStore.commit`` recorded."""

    def __init__(self, redis: aioredis.Redis, *, prefix: str):
        self.redis = redis
        self.keys = HistoryKeys(shared_keyspace(prefix))

    async def ids(self, *, since_ms: int | None = None, limit: int = 200) -> list[str]:
        """Incident ids announced at or after ``since_ms``, latest announcement first."""
        low = "-inf" if since_ms is None else since_ms
        ids = await self.redis.zrevrangebyscore(self.keys.index, "+inf", low, start=0, num=limit)
        return [i.decode() for i in ids]

    async def alerts(self, incident_ids: Sequence[str]) -> dict[str, list[Alert]]:
        """Each incident's announcements, oldest first (empty once expired)."""
        pipe = self.redis.pipeline(transaction=False)
        for incident_id in incident_ids:
            pipe.lrange(self.keys.alerts(incident_id), 0, -1)
        found = await pipe.execute() if incident_ids else []
        return {i: [Alert.from_json(raw) for raw in raws] for i, raws in zip(incident_ids, found)}


def _dump(incident: Incident) -> str:
    e = incident.episode
    return json.dumps(
        {
            "id": incident.id,
            "signal": incident.signal.value,
            "scope": incident.scope,
            "seq": incident.seq,
            "severity": e.severity.value,
            "baseline": {"rate": e.baseline.rate, "per_minute": e.baseline.per_minute, "source": e.baseline.source, "posts": e.baseline.posts},
            "opened_minute": e.opened_minute,
            "resolved_minute": e.resolved_minute,
            "decided_minute": e.decided_minute,
            "response": asdict(incident.response),
        }
    )


def _load(raw: bytes) -> Incident:
    d = json.loads(raw)
    b = d["baseline"]
    episode = Episode(
        Severity(d["severity"]),
        Baseline(b["rate"], b["per_minute"], b["source"], b["posts"]),
        d["opened_minute"],
        d["resolved_minute"],
        d.get("decided_minute", 0),
    )
    return Incident(d["id"], Signal(d["signal"]), d["scope"], d["seq"], episode, Response(**d.get("response", {})))
