"""Where alerts go. A sink is one small class with a ``name`` and ``async send(alert)``
that returns once the alert is delivered and raises otherwise; the outbox's delivery
loop (``alerting.delivery``) retries it. Slack lives in ``alerting.slack``, Azure
Application Insights in ``alerting.appinsights``."""
from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import Protocol

from alerting.alert import Alert


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
    """JSON on the alerts topic, keyed by incident id so one incident stays in order."""

    name = "kafka"

    def __init__(self, publish: Callable[[bytes, bytes], Awaitable[None]]):
        self.publish = publish

    async def send(self, alert: Alert) -> None:
        await self.publish(alert.incident_id.encode(), alert.to_json())
