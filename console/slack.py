"""Slack's buttons on alert messages (``POST /slack/actions``): the request is Slack's
only when it carries Slack's signature over its timestamp and raw body, made with the
app's signing secret; the clicking Slack user acts as the console account linked to it
(``badbuzz users link``), with that account's role.

Slack waits 3 s for the answer. The action is one Redis compare-and-set, so it is done
before answering; the answer (the message without its buttons, saying who did what, or
an ephemeral refusal) is the response body and is also posted to the payload's
``response_url``, the way Slack updates a message after a block action."""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from urllib.parse import parse_qs

from slack_sdk.webhook.async_client import AsyncWebhookClient

from alerting.actions import ActionError, ActionRequest, IncidentActions
from alerting.incidents import IncidentHistory
from alerting.slack import answered
from console.accounts import Accounts

log = logging.getLogger(__name__)

# Slack's own limit: a request signed longer ago (or further ahead) than this is a replay.
MAX_AGE_S = 300
MAX_BODY_BYTES = 64 * 1024
REQUESTS = {
    "badbuzz_acknowledge": ActionRequest("acknowledge"),
    "badbuzz_snooze_60": ActionRequest("snooze", minutes=60),
    "badbuzz_false_alarm": ActionRequest("false_alarm", reason="marked from Slack"),
}


class BadPayload(ValueError):
    pass


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """Slack's ``X-Slack-Signature`` for a request: ``v0=`` + HMAC-SHA256 of ``v0:<timestamp>:<body>``."""
    return "v0=" + hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256).hexdigest()


def signed(secret: str, timestamp: str | None, sent: str | None, body: bytes, *, now_s: float) -> bool:
    """Whether Slack signed ``body`` at ``timestamp``, within MAX_AGE_S of now."""
    if not timestamp or not sent or not timestamp.isascii() or not timestamp.isdigit():
        return False
    if abs(now_s - int(timestamp)) > MAX_AGE_S:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body).encode(), sent.encode("utf-8", errors="replace"))


@dataclass(frozen=True)
class Click:
    slack_user: str
    action_id: str
    incident_id: str
    response_url: str


def parse(body: bytes) -> Click:
    """The one button click of a ``block_actions`` payload (form field ``payload``)."""
    try:
        form = parse_qs(body.decode("utf-8"), strict_parsing=True)
        payload = json.loads(form["payload"][-1])
        action = payload["actions"][0]
        return Click(str(payload["user"]["id"]), str(action["action_id"]), str(action.get("value", "")), str(payload.get("response_url", "")))
    except (UnicodeDecodeError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise BadPayload(f"not a Slack block_actions payload ({type(exc).__name__})") from None


def ephemeral(text: str) -> dict:
    return {"response_type": "ephemeral", "replace_original": False, "text": text}


async def answer(click: Click, accounts: Accounts, actions: IncidentActions, history: IncidentHistory) -> dict:
    """Do what the click asks, as the linked account; what to answer Slack."""
    request = REQUESTS.get(click.action_id)
    if request is None:
        return ephemeral(f"badbuzz does not know the button {click.action_id!r}.")
    who = await accounts.slack_account(click.slack_user)
    if who is None:
        await accounts.audit(f"slack:{click.slack_user}", "refused", f"{click.action_id} on {click.incident_id}: Slack user not linked")
        return ephemeral("Your Slack user is not linked to a badbuzz console account: ask an admin to run "
                         f"`badbuzz users link NAME --slack-user {click.slack_user}`.")
    if not who.may("responder"):
        await accounts.audit(who.name, "refused", f"Slack {click.action_id} on {click.incident_id} needs responder")
        return ephemeral(f"This needs the responder role; {who.name} is a {who.role}.")
    try:
        done = await actions.apply(click.incident_id, request, actor=who.name)
    except ActionError as exc:
        return ephemeral(exc.message)
    await accounts.audit(who.name, f"incident {done.action}", f"{click.incident_id} (from Slack {click.slack_user})" + (f": {done.note}" if done.note else ""))
    announced = (await history.alerts([click.incident_id]))[click.incident_id]
    paged = [a for a in announced if a.action in ("opened", "escalated", "reopened", "renotified")]
    shown = paged[-1] if paged else done
    return {"replace_original": True, "text": done.headline, "attachments": answered(shown, done)}


async def post_back(response_url: str, reply: dict, *, timeout_s: float) -> None:
    """Update the message (or say the refusal) through Slack's response URL."""
    if not response_url:
        return
    try:
        sent = await AsyncWebhookClient(response_url, timeout=int(timeout_s)).send_dict(reply)
        if sent.status_code != 200:
            log.warning("Slack response_url answered %s", sent.status_code)
    except Exception as exc:  # noqa: BLE001 - the action is done; only the message update failed
        log.warning("Slack response_url not reached: %s", type(exc).__name__)
