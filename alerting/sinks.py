"""Where alerts go. A sink is one small class with a ``name`` and ``async send(alert)``
that returns once the alert is delivered and raises otherwise; the outbox's delivery
loop (``alerting.delivery``) retries it. Slack lives in ``alerting.slack``, Azure
Application Insights in ``alerting.appinsights``."""
from __future__ import annotations

import sys
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Protocol

import orjson
from aiokafka import AIOKafkaConsumer

from alerting.alert import Alert

# Producer clocks may run behind the clock that stamped the alert by this much.
_CLOCK_SKEW_MS = 5 * 60_000


class AlertSink(Protocol):
    name: str

    async def send(self, alert: Alert) -> None:
        """Deliver, or raise."""


class ConsoleSink:
    name = "console"

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout

    async def send(self, alert: Alert) -> None:
        print(f"\n*** ALERT {alert.alert_id} ***\n{alert.summary()}\n", file=self.stream, flush=True)


class KafkaSink:
    """JSON on the alerts topic, keyed by incident id so one incident stays in order.

    Once per alert id: a write whose acknowledgement was lost (the broker or this worker
    died after the broker took it) is sent again by the outbox, so each send first looks
    for the alert on the topic (``published``) and skips one that is already there."""

    name = "kafka"

    def __init__(self, publish: Callable[[bytes, bytes], Awaitable[None]], published: Callable[[Alert], Awaitable[bool]] | None = None):
        self.publish = publish
        self.published = published

    async def send(self, alert: Alert) -> None:
        if self.published is not None and await self.published(alert):
            return
        await self.publish(alert.incident_id.encode(), alert.to_json())


async def on_topic(client_options: dict[str, Any], topic: str, alert: Alert) -> bool:
    """Whether ``alert`` is on ``topic``: reads every partition from the alert's creation
    time (less the clock skew allowance) to its end. Alerts are few, so this is cheap."""
    since_ms = int(datetime.fromisoformat(alert.created_at.replace("Z", "+00:00")).timestamp() * 1000) - _CLOCK_SKEW_MS
    # Without a group, a subscribed consumer is assigned every partition of the topic.
    consumer = AIOKafkaConsumer(topic, **client_options, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        partitions = sorted(consumer.assignment())
        if not partitions:
            return False
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.offsets_for_times({tp: since_ms for tp in partitions})
        pending = {}
        for tp in partitions:
            start = starts[tp].offset if starts.get(tp) is not None else ends[tp]
            if start < ends[tp]:
                consumer.seek(tp, start)
                pending[tp] = ends[tp]
        wanted = alert.alert_id
        # Bounded: a search that cannot finish sends again (a duplicate beats a loss).
        deadline = time.monotonic() + 30
        while pending and time.monotonic() < deadline:
            for tp, records in (await consumer.getmany(*pending, timeout_ms=1000)).items():
                for record in records:
                    if record.offset >= pending.get(tp, 0):
                        continue
                    try:
                        if orjson.loads(record.value).get("alert_id") == wanted:
                            return True
                    except (orjson.JSONDecodeError, AttributeError):
                        continue
            pending = {tp: end for tp, end in pending.items() if await consumer.position(tp) < end}
        return False
    finally:
        await consumer.stop()
