"""Whatever ids and terms an alert carries, the Application Insights envelopes are valid
JSON on the wire with every value in its own field: an id is never split, merged or
turned into structure, and every custom dimension is a string."""
from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from alerting.alert import Alert
from alerting.appinsights import EVENT_NAME, envelopes

IKEY = "6f0e2c1a-1b2c-4d3e-8f90-123456789abc"
nasty = st.text(alphabet=st.sampled_from([*"\"\\{}[],:\n\r\t\u2028`<>&@ ", "é", "\x00", "\ud7ff", "a"]) | st.characters(), max_size=20)


def alert(incident_id: str, terms: list[str], post_ids: list[str], scope: str) -> Alert:
    return Alert(
        alert_id=f"{incident_id}.1", incident_id=incident_id, seq=1, signal="negative_rate", action="opened", severity="warning",
        scope=scope, window_start="2026-01-01T11:46:00Z", window_end="2026-01-01T12:01:00Z", window_minutes=15, volume=10, negatives=8,
        rate=0.8, drivers=[{"term": t, "count": 3, "baseline_count": 1, "z": 2.0} for t in terms], example_post_ids=post_ids,
        model="badbuzz-sentiment v1 (tfidf)", link="https://dash.test/x",
    )


@settings(max_examples=200, deadline=None)
@given(nasty, st.lists(nasty.filter(lambda t: "," not in t), max_size=4), st.lists(nasty.filter(lambda t: "," not in t), max_size=4), nasty)
def test_hostile_values_stay_values_in_the_envelopes(incident_id, terms, post_ids, scope):
    sent = alert(incident_id, terms, post_ids, scope)
    wire = [json.loads(json.dumps(e, default=lambda o: dict(o))) for e in envelopes(sent, IKEY)]

    event = next(e for e in wire if e["data"]["baseType"] == "EventData")["data"]["baseData"]
    assert event["name"] == EVENT_NAME
    props = event["properties"]
    assert all(isinstance(v, str) for v in props.values())
    assert props["incident_id"] == incident_id and props["scope"] == scope
    assert props["example_post_ids"] == ",".join(post_ids)
    assert props["drivers"] == ",".join(terms)
    assert all(e["tags"]["ai.operation.id"] == incident_id and e["iKey"] == IKEY for e in wire)
    metric_props = [e["data"]["baseData"]["properties"] for e in wire if e["data"]["baseType"] == "MetricData"]
    assert metric_props and all(p["scope"] == scope and p["incident_id"] == incident_id for p in metric_props)
