"""Responders' actions and re-notification, decided without Redis: who may be
re-notified, how action announcements read and render, which silence matches."""
from dataclasses import replace

from pydantic import SecretStr

from alerting.actions import wants_renotification
from alerting.alert import Alert
from alerting.appinsights import envelopes
from alerting.incidents import Incident, Response, next_incident
from alerting.rules import Action, Assessment, Baseline, Decision, Episode, Severity, Signal
from alerting.runtime import build_sinks, sink_names
from alerting.silences import Silence
from alerting.slack import RenotifyWebhookSink, attachments
from config.settings import Settings

MIN = 60_000
OPEN = Incident("rate-all-x", Signal.NEGATIVE_RATE, "all", 1, Episode(Severity.CRITICAL, Baseline(0.2, 10.0), 100), Response(notified_ms=1_000 * MIN))


def alert(**kw) -> Alert:
    fields = dict(alert_id="rate-all-x.2", incident_id="rate-all-x", seq=2, signal="negative_rate", action="acknowledged", severity="critical",
                  scope="all", window_start="a", window_end="b", window_minutes=15, actor="rita", note="on it")
    return Alert(**(fields | kw))


def test_only_open_critical_unacknowledged_unsnoozed_incidents_are_renotified_when_due():
    due = 1_030 * MIN
    assert wants_renotification(OPEN, now_ms=due, every_ms=30 * MIN)
    assert not wants_renotification(OPEN, now_ms=due - 1, every_ms=30 * MIN)
    assert not wants_renotification(replace(OPEN, response=replace(OPEN.response, acknowledged_by="rita")), now_ms=due, every_ms=30 * MIN)
    snoozed = replace(OPEN, response=replace(OPEN.response, snoozed_until_ms=due + 1))
    assert not wants_renotification(snoozed, now_ms=due, every_ms=30 * MIN)
    assert wants_renotification(snoozed, now_ms=due + 1, every_ms=30 * MIN)
    assert not wants_renotification(replace(OPEN, episode=replace(OPEN.episode, severity=Severity.WARNING)), now_ms=due, every_ms=30 * MIN)
    assert not wants_renotification(replace(OPEN, episode=replace(OPEN.episode, resolved_minute=120)), now_ms=due, every_ms=30 * MIN)


def test_a_reopened_incident_forgets_its_acknowledgement_and_an_escalated_one_keeps_it():
    taken = replace(OPEN, response=Response(acknowledged_by="rita", acknowledged_ms=5, snoozed_until_ms=9, false_alarm="test", notified_ms=3))
    assessment = Assessment(True, False, Severity.CRITICAL, 1e-9, 0.5)
    resolved = replace(taken, episode=replace(taken.episode, resolved_minute=110))
    reopened = next_incident(resolved, Signal.NEGATIVE_RATE, "all", Decision(Action.REOPEN, Severity.CRITICAL, Baseline(0.2, 10.0), assessment), 115)
    assert reopened.response == Response(false_alarm="test")
    escalated = next_incident(taken, Signal.NEGATIVE_RATE, "all", Decision(Action.ESCALATE, Severity.CRITICAL, Baseline(0.2, 10.0), assessment), 115)
    assert escalated.response == taken.response


def test_action_announcements_read_as_what_was_done():
    assert alert().headline == "Bad buzz acknowledged by rita [CRITICAL] on all posts"
    assert alert().summary() == "Bad buzz acknowledged by rita [CRITICAL] on all posts\n  rita is on it: on it\n  incident rate-all-x  alert rate-all-x.2"
    snooze = alert(action="snoozed", note="", snoozed_until="2026-01-01T13:00:00Z")
    assert snooze.response_line == "rita snoozed re-notification until 2026-01-01T13:00:00Z"
    assert alert(action="resolved", note="").headline == "Bad buzz resolved by rita [CRITICAL] on all posts"
    assert alert(action="false_alarm", note="test traffic").response_line == "rita marked it a false alarm: test traffic"
    again = alert(action="renotified", actor="", note="", rate=0.5, volume=100, negatives=50)
    assert again.headline == "Bad buzz still unacknowledged [CRITICAL] on all posts" and again.is_response
    assert again.response_line.startswith("still open and not acknowledged: negative rate 50.0% over 15 min")


def test_slack_and_app_insights_render_an_action():
    [attachment] = attachments(alert(action="false_alarm", note="test <!channel> traffic"))
    assert attachment["color"] == "#2EB67D"
    assert [b["type"] for b in attachment["blocks"]] == ["header", "section", "context"]
    assert attachment["blocks"][0]["text"]["text"] == ":no_entry_sign: Bad buzz marked a false alarm by rita [CRITICAL] on all posts"
    assert attachment["blocks"][1]["text"]["text"] == "rita marked it a false alarm: test &lt;!channel&gt; traffic"
    event, message, *_ = envelopes(alert(), "00000000-0000-0000-0000-000000000000")
    assert event.data.baseData.properties["actor"] == "rita" and event.data.baseData.properties["action"] == "acknowledged"
    assert message.data.baseData.message == "Bad buzz acknowledged by rita [CRITICAL] on all posts: rita is on it: on it"
    assert message.data.baseData.severityLevel == 1


async def test_the_second_route_takes_only_re_notifications():
    sent = []
    sink = RenotifyWebhookSink("http://127.0.0.1:9/hook")

    async def fake_send(**kw):
        sent.append(kw["text"])
        return type("R", (), {"status_code": 200, "body": "ok"})()

    sink.client.send = fake_send
    await sink.send(alert())
    await sink.send(alert(action="renotified", actor="", note=""))
    assert sent == ["Bad buzz still unacknowledged [CRITICAL] on all posts"]


def test_silence_matchers_and_time():
    s = Silence("silence-1", None, "negative_rate", "critical", 100, 200, "rita", "load test")
    assert s.matches(alert(), now_ms=100) and not s.matches(alert(), now_ms=200) and not s.matches(alert(), now_ms=99)
    assert not s.matches(alert(signal="volume"), now_ms=150) and not s.matches(alert(severity="warning"), now_ms=150)
    assert Silence("silence-2", "term:delay", None, None, 0, 10, "r", "x").matchers == "scope=term:delay"
    assert not Silence("silence-2", "term:delay", None, None, 0, 10, "r", "x").covers(alert())


def test_the_console_queues_for_exactly_the_sinks_a_worker_builds(tmp_path):
    settings = Settings(home=tmp_path).model_copy(update={
        "slack_webhook_url": SecretStr("http://127.0.0.1:9/a"), "renotify_slack_webhook_url": SecretStr("http://127.0.0.1:9/b"),
        "appinsights_connection_string": SecretStr("InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=http://127.0.0.1:9/"),
    })

    async def publish(key, value):
        return None

    for s in (settings, Settings(home=tmp_path)):
        assert sink_names(s) == [sink.name for sink in build_sinks(s, publish, None)]
    assert sink_names(settings) == ["console", "kafka", "slack", "slack-renotify", "appinsights"]
