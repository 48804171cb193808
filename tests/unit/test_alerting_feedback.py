"""Feedback messages, their privacy scrubbing and verdicts; the alert's wire form."""
import orjson
import pytest

from alerting.alert import Alert
from alerting.feedback import InvalidFeedback, is_wrong, make_feedback, parse_feedback, scrub_comment
from counting.counters import Prediction


def test_comments_lose_handles_and_links():
    assert scrub_comment("@JetBlue agent @bob_99 said see https://t.co/xyz and www.example.com/x") == (
        "<user> agent <user> said see <url> and <url>"
    )
    assert len(scrub_comment("no way " * 200)) == 500


def test_feedback_message_round_trip():
    message = make_feedback(" 1234 ", "negative", "@amy not sarcasm", now_ms=1_767_268_800_000)
    assert orjson.loads(message.to_json()) == {
        "post_id": "1234", "label": "negative", "comment": "<user> not sarcasm", "submitted_at": 1_767_268_800_000, "source": "cli",
    }
    assert parse_feedback(message.to_json()) == message


@pytest.mark.parametrize(
    "raw, error",
    [
        (b"not json", "not a JSON object"),
        (b"[1]", "not a JSON object"),
        (b'{"post_id": true, "label": "negative", "submitted_at": 1}', "field 'post_id' must be a string or integer"),
        (b'{"post_id": "1", "label": "meh", "submitted_at": 1}', "label must be one of negative, positive, got 'meh'"),
        (b'{"post_id": "1", "label": "negative"}', "field 'submitted_at' must be epoch milliseconds"),
        (b'{"post_id": " ", "label": "negative", "submitted_at": 1}', "the post id is empty"),
        (b'{"post_id": "1", "label": "negative", "submitted_at": 1, "comment": 5}', "field 'comment' must be a string"),
    ],
)
def test_bad_feedback_messages_say_what_is_wrong(raw, error):
    with pytest.raises(InvalidFeedback) as exc:
        parse_feedback(raw)
    assert str(exc.value) == error


def test_messages_from_other_producers_are_scrubbed_too():
    raw = b'{"post_id": 42, "label": "positive", "submitted_at": 5, "comment": "ask @someone http://x.y/z"}'
    assert parse_feedback(raw).comment == "ask <user> <url>"


def test_verdict_against_the_prediction():
    negative, calm = Prediction(0.9, True, "3"), Prediction(0.1, False, "3")
    assert is_wrong("positive", negative) is True
    assert is_wrong("negative", negative) is False
    assert is_wrong("negative", calm) is True
    assert is_wrong("positive", calm) is False
    assert is_wrong("negative", None) is None


def test_alert_json_round_trip_and_headlines():
    alert = Alert(
        alert_id="volume-delay-20260101T1200-ab.2", incident_id="volume-delay-20260101T1200-ab", seq=2, signal="volume",
        action="escalated", severity="critical", scope="term:delay", window_start="a", window_end="b", window_minutes=15,
        volume=900, expected_volume=60.0, volume_ratio=15.0, rate=0.7, drivers=[{"term": "delayed", "count": 9, "baseline_count": 1, "z": 4.0}],
    )
    data = orjson.loads(alert.to_json())
    assert data["top_terms"] == ["delayed"] and data["alert_id"] == alert.alert_id
    assert Alert.from_json(alert.to_json()) == alert
    assert alert.headline == 'Volume spike escalated [CRITICAL] on posts mentioning "delay"'
    assert alert.numbers == "900 posts in 15 min (usual 60, 15.0x), negative rate 70.0%"
    quality = Alert(
        alert_id="m.1", incident_id="m", seq=1, signal="model_quality", action="opened", severity="warning", scope="model",
        window_start="a", window_end="b", window_minutes=15, feedback_wrong=11, feedback_threshold=10,
    )
    assert quality.headline == "Model quality [WARNING] on the sentiment model"
    assert quality.numbers == "11 wrong-prediction feedbacks in 15 min (alert above 10)"


@pytest.mark.parametrize(
    "args, message",
    [
        ([" ", "--label", "positive"], "badbuzz: error: the post id is empty (see: badbuzz feedback --help)"),
        (
            ["123", "--label", "maybe"],
            "badbuzz: error: Invalid value for '--label': 'maybe' is not one of 'negative', 'positive'. (see: badbuzz feedback --help)",
        ),
        (["123"], "badbuzz: error: --label is required: negative or positive (see: badbuzz feedback --help)"),
    ],
)
def test_feedback_command_rejects_bad_input_in_one_line(args, message):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "badbuzz.cli", "feedback", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == message + "\n"
