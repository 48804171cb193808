from __future__ import annotations

import json

import mlflow
import pandas as pd
import pytest

from config.settings import Settings
from training.data import Split, file_sha256, frame_sha256
from training.feedback import FeedbackRecord, add_feedback, parse_feedback_lines, read_feedback_file, recover_texts
from training.train import train

UNREACHABLE = Settings(kafka_bootstrap="127.0.0.1:1", _env_file=None)


def test_parse_feedback_lines_keeps_the_latest_record_per_post():
    lines = [
        '{"post_id": 17, "label": "negative", "text": "lost my bag"}',
        "",
        '{"post_id": "a-1", "label": "not_negative"}',
        '{"post_id": " 17 ", "label": "neutral", "text": "found it, all good"}',
        '{"post_id": "b", "label": "positive", "text": "   "}',
    ]

    assert parse_feedback_lines(lines, "fb.jsonl") == [
        FeedbackRecord("a-1", "not_negative", None),
        FeedbackRecord("17", "neutral", "found it, all good"),
        FeedbackRecord("b", "positive", None),
    ]


@pytest.mark.parametrize(("line", "message"), [
    ("{not json", "fb.jsonl line 2: invalid JSON"),
    ("[1, 2]", "fb.jsonl line 2: expected a JSON object"),
    ('{"label": "negative"}', "fb.jsonl line 2: 'post_id' must be a non-empty string or an integer"),
    ('{"post_id": true, "label": "negative"}', "fb.jsonl line 2: 'post_id' must be a non-empty string or an integer"),
    ('{"post_id": 1, "label": "angry"}', "fb.jsonl line 2: 'label' must be one of negative, positive, neutral, not_negative, got 'angry'"),
    ('{"post_id": 1, "label": "negative", "text": 5}', "fb.jsonl line 2: 'text' must be a string when present"),
])
def test_parse_feedback_lines_rejects_bad_lines_with_their_number(line, message):
    with pytest.raises(ValueError) as raised:
        parse_feedback_lines(['{"post_id": 1, "label": "negative"}', line], "fb.jsonl")

    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)


def test_read_feedback_file_reports_a_missing_file(tmp_path):
    with pytest.raises(ValueError, match="^feedback file not found: "):
        read_feedback_file(tmp_path / "nope.jsonl")


def test_recovery_leaves_kafka_alone_when_every_record_has_its_text():
    records = [FeedbackRecord("1", "negative", "late")]

    # Port 1 refuses connections: any attempt to reach Kafka would raise.
    assert recover_texts(records, UNREACHABLE, "tweets.raw") == (records, 0)


def test_recovery_reports_an_unreachable_broker_in_one_line():
    with pytest.raises(ValueError) as raised:
        recover_texts([FeedbackRecord("1", "negative")], UNREACHABLE, "tweets.raw")

    assert str(raised.value).startswith("cannot reach Kafka at 127.0.0.1:1 to recover feedback texts")
    assert "\n" not in str(raised.value)


def test_recovery_connects_with_the_configured_kafka_security(monkeypatch, tmp_path):
    import aiokafka.admin
    from aiokafka.errors import KafkaConnectionError

    seen: list[dict] = []

    class Admin:
        def __init__(self, **options):
            seen.append(options)

        async def start(self):
            raise KafkaConnectionError("refused")

        async def close(self):
            pass

    monkeypatch.setattr(aiokafka.admin, "AIOKafkaAdminClient", Admin)
    secured = Settings(
        kafka_bootstrap="broker:9093", kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="trainer", kafka_sasl_password="s3cret-pass", _env_file=None,
    )

    with pytest.raises(ValueError, match="cannot reach Kafka at broker:9093"):
        recover_texts([FeedbackRecord("1", "negative")], secured, "tweets.raw")

    assert [(o["security_protocol"], o["sasl_mechanism"], o["sasl_plain_username"], o["sasl_plain_password"]) for o in seen] == [
        ("SASL_PLAINTEXT", "SCRAM-SHA-512", "trainer", "s3cret-pass"),
    ]


def _labelled(rows: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame({
        "text": [t for t, _ in rows], "sentiment": [s for _, s in rows],
        "source": "airline", "label": [int(s == "negative") for _, s in rows],
    })


PARTS = Split(
    train=_labelled([("late again", "negative"), ("nice crew", "positive"), ("meh", "neutral")]),
    val=_labelled([("seat was ok", "neutral")]),
    test=_labelled([("worst airline", "negative"), ("lovely flight", "positive")]),
)
RECORDS = [
    FeedbackRecord("1", "negative", "bag lost twice"),           # added
    FeedbackRecord("2", "not_negative", "on time for once"),     # added under negative_vs_rest only
    FeedbackRecord("3", "negative", " worst airline "),          # in the test part: dropped
    FeedbackRecord("4", "positive", "meh"),                      # replaces the training row "meh"
    FeedbackRecord("5", "negative", None),                       # text never recovered
    FeedbackRecord("6", "negative", "bag lost twice"),           # repeats record 1's text
    FeedbackRecord("7", "neutral", "bad \ufffd bytes"),          # broken encoding
]


def test_feedback_joins_the_training_part_only():
    parts, report = add_feedback(PARTS, RECORDS, "negative_vs_rest", recovered=2)

    assert parts.val is PARTS.val and parts.test is PARTS.test
    assert list(zip(parts.train["text"], parts.train["label"], parts.train["source"])) == [
        ("late again", 1, "airline"), ("nice crew", 0, "airline"),
        ("bag lost twice", 1, "feedback"), ("on time for once", 0, "feedback"), ("meh", 0, "feedback"),
    ]
    assert report.as_dict() == {
        "records": 7, "recovered": 2, "missing_text": 1, "unusable_text": 2, "not_in_scheme": 0,
        "in_held_out": 1, "replaced_train": 1, "added": 3,
    }


def test_feedback_without_a_positive_or_negative_label_cannot_train_negative_vs_positive():
    parts, report = add_feedback(PARTS, RECORDS, "negative_vs_positive")

    assert parts.train["text"].tolist()[-2:] == ["bag lost twice", "meh"]
    assert (report.not_in_scheme, report.added) == (1, 2)


def _write(path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def test_training_with_feedback_logs_it_and_keeps_the_test_split(tmp_path):
    settings = Settings(home=tmp_path / "home", _env_file=None)
    feedback = tmp_path / "feedback.jsonl"
    _write(feedback, [
        {"post_id": i, "label": label, "text": f"@united feedback post {i} about {word}"}
        for i, (label, word) in enumerate([("negative", "lost bags")] * 6 + [("not_negative", "a fine crew")] * 4)
    ])
    lines: list[str] = []

    plain = train("tfidf", settings=settings, limit=300, register=False, progress=lambda _: None)
    with_feedback = train("tfidf", settings=settings, limit=300, register=False, feedback=feedback, progress=lines.append)

    client = mlflow.MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
    before, after = (client.get_run(r.run_id).data for r in (plain, with_feedback))
    assert after.params["n_feedback"] == "10"
    assert after.params["feedback_sha256"] == file_sha256([feedback])
    assert after.params["feedback_file"] == "feedback.jsonl"
    assert (after.params["feedback_records"], after.params["feedback_missing_text"]) == ("10", "0")
    assert before.params["n_feedback"] == "0"
    assert int(after.params["n_train"]) == int(before.params["n_train"]) + 10
    assert (after.params["n_val"], after.params["n_test"]) == (before.params["n_val"], before.params["n_test"])
    assert after.tags["test_split_hash"] == before.tags["test_split_hash"]
    assert after.tags["data_hash"] == before.tags["data_hash"]
    assert (
        "feedback: 10 records, 0 texts recovered from tweets.raw, 0 missing; 10 added to train (0 also in val/test, "
        f"0 unusable under negative_vs_rest, 0 empty/broken/repeated, 0 training rows replaced); train now {after.params['n_train']}"
    ) in lines
    # Counts only: no feedback text reaches the progress output.
    assert not any("feedback post" in line for line in lines)


def test_split_hash_ignores_row_order_but_not_labels():
    df = _labelled([("a", "negative"), ("b", "positive")])

    assert frame_sha256(df) == frame_sha256(df.iloc[::-1])
    assert frame_sha256(df) != frame_sha256(df.assign(label=[0, 0]))
