"""Where alerts go. Each sink is one small class with ``async send(alert)``; a failing
sink is logged and never stops the others or the scoring."""
from __future__ import annotations

import logging
import sys
from typing import Awaitable, Callable, Protocol, Sequence

from slack_sdk.webhook.async_client import AsyncWebhookClient

from alerting.alert import Alert

log = logging.getLogger(__name__)


class AlertSink(Protocol):
    name: str

    async def send(self, alert: Alert) -> None: ...


class ConsoleSink:
    name = "console"

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout

    async def send(self, alert: Alert) -> None:
        print(f"\n*** ALERT ***\n{alert.summary()}\n", file=self.stream, flush=True)


class KafkaSink:
    """JSON on the alerts topic, keyed by incident id so one incident stays in order."""

    name = "kafka"

    def __init__(self, publish: Callable[[bytes, bytes], Awaitable[None]]):
        self.publish = publish

    async def send(self, alert: Alert) -> None:
        await self.publish(alert.incident_id.encode(), alert.to_json())


_SEVERITY_EMOJI = {"warning": ":warning:", "critical": ":rotating_light:"}


class SlackWebhookSink:
    name = "slack"

    def __init__(self, url: str, *, timeout_s: float = 10.0):
        self.client = AsyncWebhookClient(url, timeout=int(timeout_s))

    async def send(self, alert: Alert) -> None:
        response = await self.client.send(text=alert.headline, blocks=slack_blocks(alert))
        if response.status_code != 200:
            raise RuntimeError(f"Slack webhook answered {response.status_code}: {response.body[:200]}")


def slack_blocks(alert: Alert) -> list[dict]:
    icon = ":white_check_mark:" if alert.action == "resolved" else _SEVERITY_EMOJI.get(alert.severity, "")
    fields = [
        ("Negative rate", f"{alert.rate:.1%} ({alert.negatives}/{alert.volume} posts)"),
        ("Baseline", f"{alert.baseline:.1%}"),
        ("Window", f"{alert.window_minutes} min, {alert.window_start} .. {alert.window_end}"),
        ("Model", alert.model),
    ]
    return [
        {"type": "header", "text": {"type": "plain_text", "text": f"{icon} {alert.headline}".strip()}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in fields]},
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": "*Top negative terms:* " + (", ".join(alert.top_terms) or "-")},
        },
        {"type": "context", "elements": [{"type": "mrkdwn", "text": f"incident `{alert.incident_id}`"}]},
    ]


class Dispatcher:
    def __init__(self, sinks: Sequence[AlertSink]):
        self.sinks = list(sinks)

    async def dispatch(self, alert: Alert) -> dict[str, bool]:
        delivered = {}
        for sink in self.sinks:
            try:
                await sink.send(alert)
                delivered[sink.name] = True
            except Exception:
                log.exception("alert %s not delivered to %s", alert.alert_id, sink.name)
                delivered[sink.name] = False
        return delivered
