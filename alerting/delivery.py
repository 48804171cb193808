"""Background delivery from the outbox: one loop per sink, each claiming due alerts,
sending them, and acknowledging or backing off. A sink that is down only delays its own
queue; scoring never waits for it (the pipeline only writes to the outbox).

Within one incident a sink receives announcements in order: an update waits while the
announcement before it is still queued for that sink (so a Slack reply never arrives
before the message it threads under)."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from redis.exceptions import RedisError

from alerting.outbox import Outbox
from alerting.sinks import AlertSink

log = logging.getLogger(__name__)

# An update whose predecessor is still queued looks again this soon.
ORDER_WAIT_MS = 500
# Recording a delivery Redis refused is tried again after this, doubling up to the maximum.
ACK_RETRY_S = 0.2
ACK_RETRY_MAX_S = 2.0
# A renewed lease outlasts the send it covers by this much (Redis round trips, clock skew).
LEASE_MARGIN_S = 5.0


class Delivery:
    def __init__(
        self,
        outbox: Outbox,
        sinks: Sequence[AlertSink],
        *,
        send_timeout_s: float,
        poll_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ):
        self.outbox = outbox
        self.sinks = list(sinks)
        self.send_timeout_s = send_timeout_s
        self.poll_s = poll_s
        self.clock = clock
        self.lease_s = max(outbox.cfg.lease_s, send_timeout_s + LEASE_MARGIN_S)

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def run(self) -> None:
        """Deliver forever (until cancelled)."""
        await asyncio.gather(*(self._loop(sink) for sink in self.sinks))

    async def _loop(self, sink: AlertSink) -> None:
        wakeup = self.outbox.subscribe()
        while True:
            try:
                handled = await self.deliver_due(sink)
            except RedisError as exc:
                log.error("outbox for %s unreachable (%s); retrying in %.0fs", sink.name, exc, self.poll_s)
                handled = 0
            if not handled:
                try:
                    await asyncio.wait_for(wakeup.wait(), self.poll_s)
                except TimeoutError:
                    pass
                wakeup.clear()

    async def deliver_due(self, sink: AlertSink, *, limit: int = 10) -> int:
        """One pass over the sink's due alerts; returns how many it handled."""
        ids, leased_until = await self.outbox.claim(sink.name, now_ms=self._now_ms(), limit=limit, lease_s=self.lease_s)
        for alert_id in ids:
            await self._deliver(sink, alert_id, leased_until)
        return len(ids)

    async def _deliver(self, sink: AlertSink, alert_id: str, leased_until: int) -> None:
        if await self.outbox.is_delivered(sink.name, alert_id):
            await self.outbox.ack(sink.name, alert_id)
            return
        alert = await self.outbox.load(alert_id)
        if alert is None:
            log.error("alert %s expired before %s took it; dropped", alert_id, sink.name)
            await self.outbox.drop(sink.name, alert_id)
            return
        if alert.seq > 1:
            previous = f"{alert.incident_id}.{alert.seq - 1}"
            if not await self.outbox.is_delivered(sink.name, previous) and await self.outbox.is_queued(sink.name, previous):
                await self.outbox.defer(sink.name, alert_id, until_ms=self._now_ms() + ORDER_WAIT_MS)
                return
        # Earlier sends of this batch may have used up the claim: renew it for this send,
        # unless another worker has already claimed the alert.
        if not await self.outbox.renew(sink.name, alert_id, leased_until=leased_until, until_ms=self._now_ms() + int(self.lease_s * 1000)):
            log.info("alert %s for %s was claimed by another worker while this one was busy", alert_id, sink.name)
            return
        try:
            await asyncio.wait_for(sink.send(alert), self.send_timeout_s)
        except Exception as exc:  # any sink failure is retried, never raised into the loop
            attempts = await self.outbox.retry_later(sink.name, alert_id, now_ms=self._now_ms())
            log.warning("alert %s not delivered to %s (attempt %d): %s: %s", alert_id, sink.name, attempts, type(exc).__name__, str(exc)[:300])
            return
        await self._ack_delivered(sink, alert_id)
        log.info("alert %s delivered to %s", alert_id, sink.name)

    async def _ack_delivered(self, sink: AlertSink, alert_id: str) -> None:
        """Record a delivery, however long Redis refuses it: giving up here would leave the
        alert queued and send it to the sink a second time."""
        delay = ACK_RETRY_S
        while True:
            try:
                await self.outbox.ack(sink.name, alert_id)
            except RedisError as exc:
                if delay == ACK_RETRY_S:
                    log.error("alert %s reached %s but Redis refuses to record it (%s); retrying until it does", alert_id, sink.name, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, ACK_RETRY_MAX_S)
                continue
            if delay != ACK_RETRY_S:
                log.info("delivery of alert %s to %s recorded", alert_id, sink.name)
            return
