"""Feedback texts recovered by post id from the raw topic of the real broker (a topic of
this test's own, deleted afterwards)."""
from __future__ import annotations

import asyncio
import json
import uuid

import mlflow
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from config.settings import Settings
from config.topics import delete_topics, ensure_topics
from training.feedback import FeedbackRecord, recover_texts, scan_topic
from training.train import train

pytestmark = pytest.mark.integration

MESSAGES = [
    (b"101", orjson.dumps({"id": 101, "text": "@united lost my bag again", "created_at": 1764000000000})),
    (b"abc", orjson.dumps({"id": "abc", "text": "@united thank you, lovely crew"})),
    (b"x", b"not json at all"),
    (b"102", orjson.dumps({"id": 102, "text": ""})),                      # empty: skipped
    (b"101", orjson.dumps({"id": 101, "text": "a later copy of 101"})),    # same partition, later: not used
    (b"y", orjson.dumps({"text": "no id here"})),
    (b"103", orjson.dumps({"id": 103, "text": "@united five hour delay, no food"})),
]


@pytest.fixture(scope="module")
def raw_topic(live_services):
    bootstrap, _ = live_services
    settings = Settings(kafka_bootstrap=bootstrap, topic_raw=f"t-{uuid.uuid4().hex[:10]}.raw", _env_file=None)

    async def fill() -> None:
        await ensure_topics(settings, [settings.topic_raw], partitions=3)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            for key, value in MESSAGES:
                await producer.send(settings.topic_raw, key=key, value=value)
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(fill())
    yield settings
    asyncio.run(delete_topics(settings, [settings.topic_raw]))


def test_scan_finds_the_first_valid_message_of_each_wanted_id(raw_topic):
    found = asyncio.run(scan_topic(raw_topic, raw_topic.topic_raw, {"101", "abc", "102", "999"}))

    assert found == {"101": "@united lost my bag again", "abc": "@united thank you, lovely crew"}


def test_recovery_fills_missing_texts_and_counts_them(raw_topic):
    records = [
        FeedbackRecord("101", "negative"),
        FeedbackRecord("abc", "positive"),
        FeedbackRecord("555", "negative"),
        FeedbackRecord("103", "negative", "text given in the file wins"),
    ]

    filled, recovered = recover_texts(records, raw_topic, raw_topic.topic_raw)

    assert recovered == 2
    assert filled == [
        FeedbackRecord("101", "negative", "@united lost my bag again"),
        FeedbackRecord("abc", "positive", "@united thank you, lovely crew"),
        FeedbackRecord("555", "negative", None),
        FeedbackRecord("103", "negative", "text given in the file wins"),
    ]


def test_a_missing_topic_is_a_one_line_error(live_services):
    bootstrap, _ = live_services
    topic = f"t-{uuid.uuid4().hex[:10]}.absent"

    with pytest.raises(ValueError) as raised:
        recover_texts([FeedbackRecord("1", "negative")], Settings(kafka_bootstrap=bootstrap, _env_file=None), topic)

    assert str(raised.value) == f"topic {topic!r} does not exist on Kafka at {bootstrap}: cannot recover feedback texts"
    assert topic not in asyncio.run(_topics(bootstrap))  # looking did not create it


def test_train_with_feedback_recovers_texts_from_the_raw_topic(raw_topic, tmp_path):
    settings = raw_topic.model_copy(update={"home": tmp_path / "home"})
    feedback = tmp_path / "feedback.jsonl"
    feedback.write_text(
        "\n".join(json.dumps(r) for r in [
            {"post_id": 101, "label": "negative"},
            {"post_id": "abc", "label": "not_negative"},
            {"post_id": "gone", "label": "negative"},
        ]) + "\n",
        encoding="utf-8",
    )
    lines: list[str] = []

    result = train("tfidf", settings=settings, limit=300, register=False, feedback=feedback, progress=lines.append)

    params = mlflow.MlflowClient(tracking_uri=settings.tracking_uri).get_run(result.run_id).data.params
    assert (params["n_feedback"], params["feedback_recovered"], params["feedback_missing_text"]) == ("2", "2", "1")
    assert any(
        line.startswith(f"feedback: 3 records, 2 texts recovered from {settings.topic_raw}, 1 missing; 2 added to train")
        for line in lines
    )


async def _topics(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()
