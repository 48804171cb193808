"""Slack sinks: an incoming webhook, or a bot token posting with ``chat.postMessage``.

Both send Block Kit inside a coloured attachment (the colour is the severity; green once
resolved). The bot can thread: the opening message's channel and ``ts`` are kept in Redis
per incident, and every later announcement of the incident (escalated, reopened,
resolved, and what responders did) replies in that thread — escalations and
re-notifications are also broadcast to the channel. An
incoming webhook cannot thread, so there each announcement is a message of its own that
names the incident."""
from __future__ import annotations

import re
from urllib.parse import quote

import redis.asyncio as aioredis
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from alerting.alert import NO_DRIVERS, Alert
from config.connections import shared_keyspace, transaction

COLOURS = {"watch": "#ECB22E", "warning": "#E8912D", "critical": "#E01E5A", "resolved": "#2EB67D"}
_ICONS = {"watch": ":eyes:", "warning": ":warning:", "critical": ":rotating_light:", "resolved": ":white_check_mark:"}
_RESPONSE_ICONS = {
    "acknowledged": ":raising_hand:", "snoozed": ":zzz:", "resolved": ":white_check_mark:", "false_alarm": ":no_entry_sign:",
    "note": ":memo:", "renotified": ":rotating_light:",
}
_ENDED = ("resolved", "false_alarm")
# Announcements that page someone carry the buttons; the console's POST /slack/actions
# takes the clicks (action ids below, the incident id as the value).
_PAGING = ("opened", "escalated", "reopened", "renotified")
BUTTONS = {"badbuzz_acknowledge": "Acknowledge", "badbuzz_snooze_60": "Snooze 1 h", "badbuzz_false_alarm": "False alarm"}


class SlackDeliveryError(RuntimeError):
    pass


# Text from posts and settings (terms, ids, model names) goes into mrkdwn. Slack reads
# <...> as links and mentions (<!channel>, <@U123>), so &, < and > become entities; a
# backtick would open or close a code span, and no escape exists for it, so it becomes a
# look-alike; a line break inside a value could forge a line of the alert, or end a code
# span; and @channel-style words get an invisible joiner so no parse setting turns them
# into a mention.
_BACKTICK_LOOKALIKE = "\u02cb"
_WORD_JOINER = "\u2060"
_LINE_BREAKS = re.compile(r"[\r\n\v\f\x1c-\x1e\x85\u2028\u2029]+")
_MENTION = re.compile(r"@(?=\w)")


def _escape(text: str) -> str:
    """One line of mrkdwn showing ``text`` as it is."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("`", _BACKTICK_LOOKALIKE)
    return _MENTION.sub("@" + _WORD_JOINER, _LINE_BREAKS.sub(" ", text))


def _code(text: str) -> str:
    """``text`` as an inline code span that nothing in it can end early."""
    return f"`{_escape(text) or ' '}`"


def _link(url: str, label: str) -> str:
    # Percent-encoded, so nothing in the URL (a |, a space, a >) ends it early.
    target = quote(url, safe=":/?#[]@!$&'()*+,;=%").replace("&", "&amp;")
    return f"<{target}|{_escape(label)}>"


def colour(alert: Alert) -> str:
    return COLOURS["resolved" if alert.action in _ENDED else alert.severity]


def _context(alert: Alert) -> dict:
    context = f"incident {_code(alert.incident_id)} · alert {_code(alert.alert_id)}"
    if alert.link:
        context += f" · {_link(alert.link, 'look it up')}"
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]}


def buttons(alert: Alert, console_url: str = "") -> dict | None:
    """The actions block of a paging announcement (None for any other)."""
    if alert.action not in _PAGING:
        return None
    elements: list[dict] = [
        {"type": "button", "action_id": action_id, "text": {"type": "plain_text", "text": label}, "value": alert.incident_id}
        for action_id, label in BUTTONS.items()
    ]
    elements[0]["style"] = "primary"
    elements[2]["style"] = "danger"
    if console_url:
        elements.append({
            "type": "button", "action_id": "badbuzz_open", "text": {"type": "plain_text", "text": "Open in console"},
            "url": f"{console_url.rstrip('/')}/incidents/{quote(alert.incident_id, safe='')}",
        })
    return {"type": "actions", "block_id": f"badbuzz:{alert.alert_id}"[:255], "elements": elements}


def blocks(alert: Alert, console_url: str = "") -> list[dict]:
    out = _blocks(alert)
    actions = buttons(alert, console_url)
    return out if actions is None else [*out[:-1], actions, out[-1]]


def answered(alert: Alert, done: Alert) -> list[dict]:
    """The attachments of ``alert``'s message once a responder acted on it from Slack:
    no buttons, and a line saying who did what (``done`` is that announcement)."""
    out = _blocks(alert)
    said = {"type": "section", "text": {"type": "mrkdwn", "text": f"{_RESPONSE_ICONS[done.action]} {_escape(done.response_line)}"}}
    return [{"color": colour(alert), "fallback": _escape(alert.headline), "blocks": [*out[:-1], said, out[-1]]}]


def _blocks(alert: Alert) -> list[dict]:
    if alert.is_response:
        return [
            {"type": "header", "text": {"type": "plain_text", "text": f"{_RESPONSE_ICONS[alert.action]} {alert.headline}"[:150], "emoji": True}},
            {"type": "section", "text": {"type": "mrkdwn", "text": _escape(alert.response_line)}},
            _context(alert),
        ]
    icon = _ICONS["resolved" if alert.action == "resolved" else alert.severity]
    out: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": f"{icon} {alert.headline}"[:150], "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _escape(alert.numbers)}},
    ]
    if alert.signal == "model_quality":
        fields = [("Window", f"{alert.window_start} .. {alert.window_end}"), ("Model", alert.model)]
    else:
        baseline = "-" if alert.baseline is None else f"{alert.baseline:.1%} ({alert.baseline_source})"
        expected = "-" if alert.expected_volume is None else f"{alert.expected_volume:.0f}"
        fields = [
            ("Negative rate", f"{alert.rate:.1%} ({alert.negatives}/{alert.volume})"),
            ("Baseline", baseline),
            ("Volume", f"{alert.volume} posts (usual {expected})"),
            ("p-value", f"{alert.p_value:.2g}"),
            ("Window", f"{alert.window_start} .. {alert.window_end}"),
            ("Model", alert.model),
        ]
    out.append({"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{_escape(v)}"} for k, v in fields]})
    if alert.signal != "model_quality":
        drivers = ", ".join(f"{_code(str(d['term']))} ({d['count']} vs {d['baseline_count']})" for d in alert.drivers) or NO_DRIVERS
        examples = ", ".join(_code(str(i)) for i in alert.example_post_ids) or "-"
        out.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*Drivers:* {drivers}\n*Example posts:* {examples}"}})
    out.append(_context(alert))
    return out


def attachments(alert: Alert, console_url: str = "") -> list[dict]:
    return [{"color": colour(alert), "fallback": _escape(alert.headline), "blocks": blocks(alert, console_url)}]


class SlackWebhookSink:
    name = "slack"

    def __init__(self, url: str, *, timeout_s: float = 10.0, console_url: str = ""):
        self.client = AsyncWebhookClient(url, timeout=int(timeout_s))
        self.console_url = console_url

    async def send(self, alert: Alert) -> None:
        response = await self.client.send(text=_escape(alert.headline), attachments=attachments(alert, self.console_url))
        if response.status_code != 200:
            raise SlackDeliveryError(f"Slack webhook answered {response.status_code}: {str(response.body)[:200]}")


class RenotifyWebhookSink(SlackWebhookSink):
    """The second route for critical incidents nobody acknowledged: it takes only the
    re-notifications (every other announcement is done with at once)."""

    name = "slack-renotify"

    async def send(self, alert: Alert) -> None:
        if alert.action == "renotified":
            await super().send(alert)


class SlackBotSink:
    name = "slack"

    def __init__(
        self,
        token: str,
        channel: str,
        redis: aioredis.Redis,
        *,
        prefix: str,
        ttl_s: int,
        base_url: str = AsyncWebClient.BASE_URL,
        timeout_s: float = 10.0,
        console_url: str = "",
    ):
        self.client = AsyncWebClient(token=token, base_url=base_url, timeout=int(timeout_s))
        self.console_url = console_url
        self.channel = channel
        self.redis = redis
        self.prefix = shared_keyspace(prefix)
        self.ttl_s = ttl_s

    def _thread_key(self, incident_id: str) -> str:
        return f"{self.prefix}:slack:thread:{incident_id}"

    def _posted_key(self, alert_id: str) -> str:
        return f"{self.prefix}:slack:posted:{alert_id}"

    async def send(self, alert: Alert) -> None:
        # Posted before but not acknowledged (a crash in between): do not post twice.
        if await self.redis.exists(self._posted_key(alert.alert_id)):
            return
        thread = await self.redis.get(self._thread_key(alert.incident_id))
        kwargs: dict = {}
        channel = self.channel
        if thread is not None:
            channel, thread_ts = thread.decode().split("|", 1)
            kwargs = {"thread_ts": thread_ts, "reply_broadcast": alert.action in ("escalated", "renotified")}
        response = await self.client.chat_postMessage(channel=channel, text=_escape(alert.headline), attachments=attachments(alert, self.console_url), **kwargs)
        if not response.get("ok"):
            raise SlackDeliveryError(f"chat.postMessage failed: {response.get('error')}")
        ts = str(response["ts"])
        pipe = await transaction(self.redis)
        pipe.set(self._posted_key(alert.alert_id), ts, ex=self.ttl_s)
        if thread is None:
            pipe.set(self._thread_key(alert.incident_id), f"{response['channel']}|{ts}", nx=True, ex=self.ttl_s)
        await pipe.execute()
