"""Incident state per scope, in Redis so that every worker sees the same open incident
and only one of them announces it."""
from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

import redis.asyncio as aioredis

from alerting.rules import Decision, OpenIncident, Severity

# Replace the incident only if it is still the one the caller read (another worker may
# have resolved or escalated it in between).
_COMPARE_AND_SET = """
local current = redis.call('GET', KEYS[1])
if not current or cjson.decode(current)['id'] ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL') end
return 1
"""


@dataclass(frozen=True)
class Incident:
    id: str
    scope: str
    severity: Severity
    baseline: float
    opened_ms: int

    @property
    def state(self) -> OpenIncident:
        return OpenIncident(self.severity, self.baseline)


def new_incident_id(scope: str, event_ms: int) -> str:
    stamp = datetime.fromtimestamp(event_ms / 1000, tz=timezone.utc).strftime("%Y%m%dT%H%M")
    slug = "".join(c if c.isalnum() else "-" for c in scope).strip("-")
    return f"{slug}-{stamp}-{uuid.uuid4().hex[:8]}"


class IncidentStore:
    def __init__(self, redis: aioredis.Redis, *, prefix: str, ttl_s: int):
        self.redis = redis
        self.prefix = prefix
        self.ttl_s = ttl_s
        self._cas = redis.register_script(_COMPARE_AND_SET)

    def _key(self, scope: str) -> str:
        return f"{self.prefix}:incident:{scope}"

    async def get(self, scope: str) -> Incident | None:
        raw = await self.redis.get(self._key(scope))
        if raw is None:
            return None
        data = json.loads(raw)
        return Incident(data["id"], data["scope"], Severity(data["severity"]), data["baseline"], data["opened_ms"])

    async def open(self, scope: str, decision: Decision, event_ms: int) -> Incident | None:
        """Open an incident; None when another worker opened one first."""
        incident = Incident(new_incident_id(scope, event_ms), scope, decision.severity, decision.baseline, event_ms)
        created = await self.redis.set(self._key(scope), _dump(incident), nx=True, ex=self.ttl_s)
        return incident if created else None

    async def escalate(self, incident: Incident, severity: Severity) -> Incident | None:
        updated = Incident(incident.id, incident.scope, severity, incident.baseline, incident.opened_ms)
        ok = await self._cas(keys=[self._key(incident.scope)], args=[incident.id, _dump(updated)])
        return updated if ok else None

    async def resolve(self, incident: Incident) -> bool:
        return bool(await self._cas(keys=[self._key(incident.scope)], args=[incident.id, ""]))


def _dump(incident: Incident) -> str:
    data = asdict(incident)
    data["severity"] = incident.severity.value
    return json.dumps(data)
