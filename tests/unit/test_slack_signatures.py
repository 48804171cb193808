"""Slack's buttons without Slack: the request signature (Slack's documented example),
the replay window, the payload, and which messages carry which buttons."""
import json
from urllib.parse import urlencode

import pytest

from alerting.alert import Alert
from alerting.slack import answered, attachments
from console.slack import BadPayload, Click, parse, signature, signed

# From Slack's "Verifying requests from Slack" page.
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SLACK_TIMESTAMP = "1531420618"
SLACK_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar"
    b"&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands"
    b"%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
SLACK_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"


def alert(**kw) -> Alert:
    fields = dict(alert_id="rate-all-x.1", incident_id="rate-all-x", seq=1, signal="negative_rate", action="opened", severity="critical",
                  scope="all", window_start="a", window_end="b", window_minutes=15, rate=0.5, volume=100, negatives=50)
    return Alert(**(fields | kw))


def test_the_signature_is_slacks_documented_example():
    assert signature(SLACK_SECRET, SLACK_TIMESTAMP, SLACK_BODY) == SLACK_SIGNATURE


def test_only_a_fresh_request_signed_with_the_secret_passes():
    now = int(SLACK_TIMESTAMP)
    assert signed(SLACK_SECRET, SLACK_TIMESTAMP, SLACK_SIGNATURE, SLACK_BODY, now_s=now + 300)
    assert signed(SLACK_SECRET, SLACK_TIMESTAMP, SLACK_SIGNATURE, SLACK_BODY, now_s=now - 300)
    assert not signed(SLACK_SECRET, SLACK_TIMESTAMP, SLACK_SIGNATURE, SLACK_BODY, now_s=now + 301)
    assert not signed(SLACK_SECRET, SLACK_TIMESTAMP, SLACK_SIGNATURE, SLACK_BODY, now_s=now - 301)
    assert not signed("another secret", SLACK_TIMESTAMP, SLACK_SIGNATURE, SLACK_BODY, now_s=now)
    assert not signed(SLACK_SECRET, SLACK_TIMESTAMP, SLACK_SIGNATURE, SLACK_BODY + b"&x=1", now_s=now)
    assert not signed(SLACK_SECRET, SLACK_TIMESTAMP, SLACK_SIGNATURE.replace("v0=a", "v0=b"), SLACK_BODY, now_s=now)
    for timestamp in (None, "", "-1", "1.5e9", "１５３１４２０６１８"):
        assert not signed(SLACK_SECRET, timestamp, SLACK_SIGNATURE, SLACK_BODY, now_s=now)
    for sent in (None, "", "v0=é"):
        assert not signed(SLACK_SECRET, SLACK_TIMESTAMP, sent, SLACK_BODY, now_s=now)


def test_a_block_actions_payload_names_the_user_button_and_incident():
    payload = {"type": "block_actions", "user": {"id": "U123"}, "response_url": "https://hooks.slack.com/actions/T1/1/x",
               "actions": [{"action_id": "badbuzz_snooze_60", "value": "rate-all-x", "type": "button"}]}
    body = urlencode({"payload": json.dumps(payload)}).encode()
    assert parse(body) == Click("U123", "badbuzz_snooze_60", "rate-all-x", "https://hooks.slack.com/actions/T1/1/x")
    for bad in (b"", b"payload=not-json", urlencode({"payload": json.dumps({"user": {"id": "U1"}, "actions": []})}).encode(), b"\xff"):
        with pytest.raises(BadPayload):
            parse(bad)


def test_paging_announcements_carry_the_buttons_and_the_console_link():
    blocks = attachments(alert(), "https://console.test/")[0]["blocks"]
    actions = blocks[-2]
    assert actions["type"] == "actions" and blocks[-1]["type"] == "context"
    assert [(b["action_id"], b["text"]["text"], b.get("value"), b.get("url")) for b in actions["elements"]] == [
        ("badbuzz_acknowledge", "Acknowledge", "rate-all-x", None),
        ("badbuzz_snooze_60", "Snooze 1 h", "rate-all-x", None),
        ("badbuzz_false_alarm", "False alarm", "rate-all-x", None),
        ("badbuzz_open", "Open in console", None, "https://console.test/incidents/rate-all-x"),
    ]
    again = attachments(alert(action="renotified", seq=3, alert_id="rate-all-x.3"))[0]["blocks"]
    assert [b["action_id"] for b in again[-2]["elements"]] == ["badbuzz_acknowledge", "badbuzz_snooze_60", "badbuzz_false_alarm"]
    for quiet in ("acknowledged", "resolved", "false_alarm", "snoozed", "note"):
        assert all(b["type"] != "actions" for b in attachments(alert(action=quiet, actor="rita"))[0]["blocks"]), quiet


def test_the_answered_message_drops_the_buttons_and_says_who_did_what():
    done = alert(action="acknowledged", actor="rita", seq=2, alert_id="rate-all-x.2")
    [attachment] = answered(alert(), done)
    assert [b["type"] for b in attachment["blocks"]] == ["header", "section", "section", "section", "section", "context"]
    assert attachment["blocks"][-2]["text"]["text"] == ":raising_hand: rita is on it"
