"""Labelled feedback: analysts' corrections, added to a run's training data.

A feedback file holds JSON lines ``{"post_id": ..., "label": ..., "text"?: ...}`` with
label ``negative``, ``positive``, ``neutral`` or ``not_negative``. A record without text
gets it back from the raw topic by post id. Feedback only ever joins the training part:
in the validation or test part it would grade the model on what it was taught."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson
import pandas as pd

from config.connections import kafka_options
from config.settings import Settings
from training.data import Split, clean, to_binary

LABELS = ("negative", "positive", "neutral", "not_negative")
# Reading the raw topic stops with an error when the broker sends nothing for this long
# while records are still due: a partial scan would report texts as missing that exist.
SCAN_IDLE_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class FeedbackRecord:
    post_id: str
    label: str
    text: str | None = None


@dataclass(frozen=True)
class FeedbackReport:
    records: int
    recovered: int
    missing_text: int
    unusable_text: int
    not_in_scheme: int
    in_held_out: int
    replaced_train: int
    added: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def parse_feedback_lines(lines: Iterable[str], source: str) -> list[FeedbackRecord]:
    """One record per post id; a later line for the same post replaces an earlier one
    (the latest correction wins). Blank lines are skipped."""
    records: dict[str, FeedbackRecord] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{source} line {number}"
        try:
            body = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"{where}: invalid JSON ({exc})") from None
        if not isinstance(body, dict):
            raise ValueError(f"{where}: expected a JSON object")
        post_id = body.get("post_id")
        if isinstance(post_id, bool) or not isinstance(post_id, (str, int)) or not str(post_id).strip():
            raise ValueError(f"{where}: 'post_id' must be a non-empty string or an integer")
        label = body.get("label")
        if label not in LABELS:
            raise ValueError(f"{where}: 'label' must be one of {', '.join(LABELS)}, got {label!r}")
        text = body.get("text")
        if text is not None and not isinstance(text, str):
            raise ValueError(f"{where}: 'text' must be a string when present")
        key = str(post_id).strip()
        records.pop(key, None)
        records[key] = FeedbackRecord(key, label, text if text and text.strip() else None)
    return list(records.values())


def read_feedback_file(path: Path) -> list[FeedbackRecord]:
    try:
        with open(path, encoding="utf-8") as handle:
            return parse_feedback_lines(handle, str(path))
    except FileNotFoundError:
        raise ValueError(f"feedback file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})") from None


def with_texts(records: list[FeedbackRecord], found: dict[str, str]) -> list[FeedbackRecord]:
    return [r if r.text is not None or r.post_id not in found else FeedbackRecord(r.post_id, r.label, found[r.post_id]) for r in records]


def recover_texts(records: list[FeedbackRecord], settings: Settings, topic: str) -> tuple[list[FeedbackRecord], int]:
    """Fill in missing texts from the raw topic; return the records and how many were
    recovered. Kafka is contacted only when some record lacks its text."""
    wanted = {r.post_id for r in records if r.text is None}
    if not wanted:
        return records, 0
    found = asyncio.run(scan_topic(settings, topic, wanted))
    return with_texts(records, found), len(found)


async def scan_topic(settings: Settings, topic: str, wanted: set[str], idle_timeout_s: float = SCAN_IDLE_TIMEOUT_S) -> dict[str, str]:
    """Texts of the wanted post ids, read from ``topic`` from its earliest offsets up to
    the end offsets at the start of the scan (or until every id is found). The first
    message carrying an id wins; messages that are not JSON objects with an ``id`` and a
    non-empty string ``text`` are skipped, as the worker would dead-letter them."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.errors import KafkaError

    bootstrap = settings.kafka_bootstrap
    partitions = [TopicPartition(topic, p) for p in await _partitions(settings, topic)]
    consumer = AIOKafkaConsumer(
        **kafka_options(settings), group_id=None, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    try:
        await consumer.start()
    except KafkaError as exc:
        await consumer.stop()
        raise ValueError(f"cannot reach Kafka at {bootstrap} to recover feedback texts: {exc}") from None
    found: dict[str, str] = {}
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        pending = {tp for tp in partitions if await consumer.position(tp) < end[tp]}
        last_progress = time.monotonic()
        while pending and len(found) < len(wanted):
            batches = await consumer.getmany(*pending, timeout_ms=500, max_records=5000)
            if batches:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > idle_timeout_s:
                raise ValueError(f"Kafka at {bootstrap} stopped sending {topic!r} before its end: feedback texts not recovered")
            for messages in batches.values():
                for message in messages:
                    post_id, text = _id_and_text(message.value)
                    if post_id in wanted and post_id not in found:
                        found[post_id] = text
            pending = {tp for tp in pending if await consumer.position(tp) < end[tp]}
    except KafkaError as exc:
        raise ValueError(f"reading {topic!r} from Kafka at {bootstrap} failed: {exc}") from None
    finally:
        await consumer.stop()
    return found


async def _partitions(settings: Settings, topic: str) -> list[int]:
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    bootstrap = settings.kafka_bootstrap
    admin = AIOKafkaAdminClient(**kafka_options(settings))
    try:
        await admin.start()
        # Listed before described: describing an absent topic makes a broker with
        # auto-creation on create it.
        exists = topic in await admin.list_topics()
        described = await admin.describe_topics([topic]) if exists else []
    except KafkaError as exc:
        raise ValueError(f"cannot reach Kafka at {bootstrap} to recover feedback texts: {exc}") from None
    finally:
        await admin.close()
    if not exists:
        raise ValueError(f"topic {topic!r} does not exist on Kafka at {bootstrap}: cannot recover feedback texts")
    return sorted(p["partition"] for t in described if t["topic"] == topic for p in t["partitions"])


def _id_and_text(value: bytes | None) -> tuple[str | None, str]:
    try:
        body = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None, ""
    if not isinstance(body, dict) or isinstance(body.get("id"), bool) or not isinstance(body.get("id"), (str, int)):
        return None, ""
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        return None, ""
    return str(body["id"]).strip(), text


def add_feedback(parts: Split, records: list[FeedbackRecord], scheme: str, recovered: int = 0) -> tuple[Split, FeedbackReport]:
    """The split with usable feedback appended to its training part.

    Dropped: records still without text, texts that cleaning rejects (empty, broken
    encoding, repeated within the feedback), labels the scheme cannot use
    (``not_negative`` and ``neutral`` under negative_vs_positive), and texts that also
    appear in the validation or test part. A training row with the same text as a
    feedback row is replaced by it: the correction is the newer label."""
    with_text = [r for r in records if r.text is not None]
    frame = pd.DataFrame(
        {"text": [r.text for r in with_text], "sentiment": [r.label for r in with_text], "source": "feedback"},
        columns=["text", "sentiment", "source"],
    )
    cleaned, _ = clean(frame)
    usable = to_binary(cleaned, scheme)
    held_out = set(pd.concat([parts.val["text"], parts.test["text"]]).str.strip())
    overlapping = usable["text"].str.strip().isin(held_out)
    added = usable[~overlapping]
    superseded = parts.train["text"].str.strip().isin(set(added["text"].str.strip()))
    train = pd.concat([parts.train[~superseded], added], ignore_index=True)
    return Split(train, parts.val, parts.test), FeedbackReport(
        records=len(records),
        recovered=recovered,
        missing_text=len(records) - len(with_text),
        unusable_text=len(frame) - len(cleaned),
        not_in_scheme=len(cleaned) - len(usable),
        in_held_out=int(overlapping.sum()),
        replaced_train=int(superseded.sum()),
        added=len(added),
    )
