"""Silences: while one matches an announcement, the incident store records it (the
detection and the incident go on) but queues it for no sink.

A silence matches on scope, signal and severity, each optional (any), between its start
and end (``P`` is the Redis prefix as a hash tag, ``{prefix}``, so on Redis Cluster all of it shares one slot).
``P:silence:<id>`` holds its JSON and expires at its end, so a silence lifts by
itself; ``P:silences`` (ids scored by their end, ms) lists them, trimmed as it is read."""
from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass

import redis.asyncio as aioredis

from alerting.alert import Alert, iso
from config.connections import shared_keyspace, transaction

SIGNALS = ("negative_rate", "volume", "model_quality")
SEVERITIES = ("watch", "warning", "critical")
MAX_REASON_CHARS = 500


class InvalidSilence(ValueError):
    pass


@dataclass(frozen=True)
class Silence:
    id: str
    scope: str | None
    signal: str | None
    severity: str | None
    starts_ms: int
    ends_ms: int
    author: str
    reason: str

    def covers(self, alert: Alert) -> bool:
        """Whether the matchers take in ``alert``, whenever it was."""
        return self.scope in (None, alert.scope) and self.signal in (None, alert.signal) and self.severity in (None, alert.severity)

    def matches(self, alert: Alert, *, now_ms: int) -> bool:
        return self.starts_ms <= now_ms < self.ends_ms and self.covers(alert)

    def to_dict(self) -> dict:
        return {**asdict(self), "starts": iso(self.starts_ms), "ends": iso(self.ends_ms)}

    @property
    def matchers(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in (("scope", self.scope), ("signal", self.signal), ("severity", self.severity)) if v) or "everything"


def _choice(name: str, value: str | None, allowed: tuple[str, ...] | None = None) -> str | None:
    if value is None or value == "":
        return None
    if allowed is not None and value not in allowed:
        raise InvalidSilence(f"{name} must be one of {', '.join(allowed)} (or empty for any), got {value!r}")
    return value


class Silences:
    def __init__(self, redis: aioredis.Redis, *, prefix: str):
        self.redis = redis
        self.prefix = shared_keyspace(prefix)
        self.index = f"{self.prefix}:silences"

    def _key(self, silence_id: str) -> str:
        return f"{self.prefix}:silence:{silence_id}"

    async def create(
        self, *, scope: str | None, signal: str | None, severity: str | None, starts_ms: int, ends_ms: int, author: str, reason: str, now_ms: int,
    ) -> Silence:
        if ends_ms <= max(starts_ms, now_ms):
            raise InvalidSilence("a silence must end after it starts, and in the future")
        if not reason.strip():
            raise InvalidSilence("say why (reason): whoever sees a muted incident needs to know")
        if len(reason) > MAX_REASON_CHARS:
            raise InvalidSilence(f"the reason is at most {MAX_REASON_CHARS} characters")
        silence = Silence(
            f"silence-{uuid.uuid4().hex[:12]}", _choice("scope", scope), _choice("signal", signal, SIGNALS),
            _choice("severity", severity, SEVERITIES), starts_ms, ends_ms, author, reason.strip(),
        )
        await self._store(silence, now_ms)
        return silence

    async def _store(self, silence: Silence, now_ms: int) -> None:
        pipe = await transaction(self.redis)
        pipe.set(self._key(silence.id), json.dumps(asdict(silence)), px=silence.ends_ms - now_ms)
        pipe.zadd(self.index, {silence.id: silence.ends_ms})
        await pipe.execute()

    async def expire(self, silence_id: str, *, now_ms: int) -> Silence | None:
        """Lift a silence now; None when there is no such silence (or it has ended)."""
        raw = await self.redis.get(self._key(silence_id))
        if raw is None:
            return None
        pipe = await transaction(self.redis)
        pipe.delete(self._key(silence_id))
        pipe.zrem(self.index, silence_id)
        await pipe.execute()
        return Silence(**{**json.loads(raw), "ends_ms": now_ms})

    async def current(self, *, now_ms: int) -> list[Silence]:
        """Silences not ended yet (active, or starting later), ending soonest first."""
        await self.redis.zremrangebyscore(self.index, "-inf", now_ms)
        ids = [i.decode() for i in await self.redis.zrange(self.index, 0, -1)]
        raws = await self.redis.mget([self._key(i) for i in ids]) if ids else []
        return [Silence(**json.loads(raw)) for raw in raws if raw is not None]

    async def matching(self, alert: Alert, *, now_ms: int) -> Silence | None:
        return next((s for s in await self.current(now_ms=now_ms) if s.matches(alert, now_ms=now_ms)), None)
