"""Whatever ids, terms and links an alert carries, the Slack payload shows them as text:
no mention, link or code span can be smuggled in through them."""
from __future__ import annotations

import json
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from alerting.alert import Alert
from alerting.slack import attachments, blocks

# Text built from the characters that matter to mrkdwn, plus anything else.
PIECES = [*"`<>&@!|*_~\n\r\u2028 #:./-", "channel", "here", "everyone", "U123", "http://x"]
nasty = st.lists(st.sampled_from(PIECES) | st.characters(), max_size=16).map("".join)
LINK = re.compile(r"<https://dash\.test/[^\s<>|]*\|look it up>")
MENTION = re.compile(r"<[!@#]|@(?:channel|here|everyone)\b")


def alert(incident_id: str, terms: list[str], post_ids: list[str], scope_term: str, model: str, new_terms: list[str], signal: str) -> Alert:
    return Alert(
        alert_id=f"{incident_id}.1", incident_id=incident_id, seq=1, signal=signal, action="opened", severity="warning",
        scope="drift" if signal == "model_quality" else f"term:{scope_term}", window_start="2026-01-01T11:46:00Z",
        window_end="2026-01-01T12:01:00Z", window_minutes=15, volume=10, negatives=8, rate=0.8,
        drivers=[{"term": t, "count": 3, "baseline_count": 1, "z": 2.0} for t in terms], example_post_ids=post_ids,
        model=model, link=f"https://dash.test/incidents/{incident_id}", new_terms=new_terms,
    )


def _mrkdwn_texts(payload: list[dict]) -> list[str]:
    texts = []
    for block in payload[0]["blocks"]:
        for element in [block.get("text"), *block.get("fields", []), *block.get("elements", [])]:
            if element and element["type"] == "mrkdwn":
                texts.append(element["text"])
    return texts


@settings(max_examples=200, deadline=None)
@given(
    nasty, st.lists(nasty, max_size=4), st.lists(nasty, max_size=3), nasty, nasty, st.lists(nasty, max_size=3),
    st.sampled_from(["negative_rate", "volume", "model_quality"]),
)
def test_no_mention_link_or_open_code_span_can_come_from_alert_fields(incident_id, terms, post_ids, scope_term, model, new_terms, signal):
    sent = alert(incident_id, terms, post_ids, scope_term, model, new_terms, signal)
    payload = attachments(sent)

    assert json.loads(json.dumps(payload)) == payload
    assert not MENTION.search(payload[0]["fallback"])
    for text in _mrkdwn_texts(payload):
        outside_link = LINK.sub("", text)
        assert "<" not in outside_link and ">" not in outside_link, text
        assert not MENTION.search(outside_link), text
        for line in text.split("\n"):
            # Code spans open and close on the same line, in pairs, never empty.
            assert line.count("`") % 2 == 0, text
            assert "``" not in line, text


def test_markup_in_terms_and_ids_is_shown_as_text():
    sent = alert("inc-1", ["`a`\n*b*", "<!channel>", "@here"], ["1 & 2"], "delay", "m <@U1>", [], "negative_rate")

    _, _, _, drivers, _buttons, context = blocks(sent)

    assert drivers["text"]["text"] == (
        "*Drivers:* `\u02cba\u02cb *b*` (3 vs 1), `&lt;!channel&gt;` (3 vs 1), `@\u2060here` (3 vs 1)\n*Example posts:* `1 &amp; 2`"
    )
    assert context["elements"][0]["text"] == "incident `inc-1` · alert `inc-1.1` · <https://dash.test/incidents/inc-1|look it up>"
