"""The durable alert outbox in Redis, one queue per sink.

An alert enters the outbox in the same atomic step that changes its incident (see
``alerting.incidents``), so a crash can neither announce a change twice nor lose it. Each
sink's queue is a sorted set of alert ids scored by when the next attempt is due; a
delivery loop claims due ids with a lease (a worker that dies mid-send leaves them due
again when the lease runs out), renews the lease of each id just before sending it — only
if no one claimed it since (the lease deadline it set is still the id's score) — so a
batch of slow sends can never outlive its claim and hand an alert to a second sender, and on success marks the id delivered for that
sink and drops it from the queue — on failure it pushes the due time out with
exponential backoff. Delivery is at-least-once; the per-sink delivered marker keeps an
alert id from being sent again by another worker or after a restart.

Key layout (``P`` is the Redis prefix as a hash tag, ``{prefix}``, so on Redis Cluster all of it shares one slot):
``P:alert:<alert id>`` (the alert's JSON),
``P:outbox:<sink>`` (due queue), ``P:outbox:<sink>:attempts`` (failed attempts per id),
``P:delivered:<sink>:<alert id>``. All expire after the retention."""
from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

from alerting.alert import Alert
from config.connections import shared_keyspace, transaction
from config.settings import Settings

_CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(due) do redis.call('ZADD', KEYS[1], 'XX', ARGV[2], id) end
return due
"""

# Marks delivered and dequeues in one step, so no other claimant can see it half-done.
# Compare-and-set on the lease deadline this claimant wrote: a claim by anyone else moved it.
_RENEW = """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('ZADD', KEYS[1], 'XX', ARGV[3], ARGV[1])
return 1
"""

_ACK = """
redis.call('SET', KEYS[3], '1', 'EX', tonumber(ARGV[2]))
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
"""

_RETRY = """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return -1 end
local attempts = redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[5]))
local delay = math.min(tonumber(ARGV[3]) * 2 ^ (attempts - 1), tonumber(ARGV[4]))
redis.call('ZADD', KEYS[1], 'XX', tonumber(ARGV[2]) + math.floor(delay * 1000), ARGV[1])
return attempts
"""


@dataclass(frozen=True)
class OutboxConfig:
    retention_s: int
    backoff_s: float
    backoff_max_s: float
    # A claim is held this long and renewed before each send; Delivery keeps it longer
    # than one send may take.
    lease_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> OutboxConfig:
        return cls(
            retention_s=settings.outbox_retention_s,
            backoff_s=settings.outbox_backoff_s,
            backoff_max_s=settings.outbox_backoff_max_s,
            lease_s=settings.outbox_send_timeout_s + 15,
        )


class OutboxKeys:
    """Keys under an already tagged ``prefix`` (``shared_keyspace``)."""

    def __init__(self, prefix: str):
        self.prefix = prefix

    def alert(self, alert_id: str) -> str:
        return f"{self.prefix}:alert:{alert_id}"

    def queue(self, sink: str) -> str:
        return f"{self.prefix}:outbox:{sink}"

    def attempts(self, sink: str) -> str:
        return f"{self.prefix}:outbox:{sink}:attempts"

    def delivered(self, sink: str, alert_id: str) -> str:
        return f"{self.prefix}:delivered:{sink}:{alert_id}"


class Outbox:
    def __init__(self, redis: aioredis.Redis, *, prefix: str, sinks: Sequence[str], cfg: OutboxConfig):
        self.redis = redis
        self.keys = OutboxKeys(shared_keyspace(prefix))
        self.sinks = list(sinks)
        self.cfg = cfg
        self._claim = redis.register_script(_CLAIM)
        self._renew = redis.register_script(_RENEW)
        self._ack = redis.register_script(_ACK)
        self._retry = redis.register_script(_RETRY)
        # Wake this process's delivery loops as soon as it queues something.
        self._wakeups: list[asyncio.Event] = []

    def subscribe(self) -> asyncio.Event:
        event = asyncio.Event()
        self._wakeups.append(event)
        return event

    def notify(self) -> None:
        for event in self._wakeups:
            event.set()

    async def enqueue(self, alert: Alert, *, now_ms: int) -> bool:
        """Queue an alert for every sink; False if this alert id was queued before."""
        created = await self.redis.set(self.keys.alert(alert.alert_id), alert.to_json(), nx=True, ex=self.cfg.retention_s)
        if not created:
            return False
        pipe = await transaction(self.redis)
        for sink in self.sinks:
            pipe.zadd(self.keys.queue(sink), {alert.alert_id: now_ms}, nx=True)
        await pipe.execute()
        self.notify()
        return True

    async def claim(self, sink: str, *, now_ms: int, limit: int = 10, lease_s: float | None = None) -> tuple[list[str], int]:
        """Due ids, each leased until the returned deadline (ms)."""
        lease_until = now_ms + int((lease_s or self.cfg.lease_s) * 1000)
        ids = await self._claim(keys=[self.keys.queue(sink)], args=[now_ms, lease_until, limit])
        return [i.decode() for i in ids], lease_until

    async def renew(self, sink: str, alert_id: str, *, leased_until: int, until_ms: int) -> bool:
        """Extend our lease on ``alert_id``; False when someone else claimed it since."""
        return bool(await self._renew(keys=[self.keys.queue(sink)], args=[alert_id, leased_until, until_ms]))

    async def load(self, alert_id: str) -> Alert | None:
        raw = await self.redis.get(self.keys.alert(alert_id))
        return None if raw is None else Alert.from_json(raw)

    async def kept_alerts(self) -> list[Alert]:
        """Every alert still kept (for the retention), in no particular order. Scans the
        keyspace: for offline jobs (the report), never the worker."""
        keys = [k async for k in self.redis.scan_iter(match=self.keys.alert("*"), count=5000)]
        alerts = []
        for start in range(0, len(keys), 1000):
            alerts += [Alert.from_json(raw) for raw in await self.redis.mget(keys[start : start + 1000]) if raw is not None]
        return alerts

    async def is_delivered(self, sink: str, alert_id: str) -> bool:
        return bool(await self.redis.exists(self.keys.delivered(sink, alert_id)))

    async def is_queued(self, sink: str, alert_id: str) -> bool:
        return await self.redis.zscore(self.keys.queue(sink), alert_id) is not None

    async def ack(self, sink: str, alert_id: str) -> None:
        await self._ack(
            keys=[self.keys.queue(sink), self.keys.attempts(sink), self.keys.delivered(sink, alert_id)],
            args=[alert_id, self.cfg.retention_s],
        )

    async def retry_later(self, sink: str, alert_id: str, *, now_ms: int) -> int:
        """Count a failed attempt and push the next one out; returns the attempts so far."""
        return int(
            await self._retry(
                keys=[self.keys.queue(sink), self.keys.attempts(sink)],
                args=[alert_id, now_ms, self.cfg.backoff_s, self.cfg.backoff_max_s, self.cfg.retention_s],
            )
        )

    async def defer(self, sink: str, alert_id: str, *, until_ms: int) -> None:
        """Push an alert back without counting a failure (it waits for an earlier one)."""
        await self.redis.zadd(self.keys.queue(sink), {alert_id: until_ms}, xx=True)

    async def drop(self, sink: str, alert_id: str) -> None:
        pipe = await transaction(self.redis)
        pipe.zrem(self.keys.queue(sink), alert_id)
        pipe.hdel(self.keys.attempts(sink), alert_id)
        await pipe.execute()

    async def pending(self, sink: str) -> int:
        return int(await self.redis.zcard(self.keys.queue(sink)))
