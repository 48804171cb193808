"""Feedback on predictions: an analyst says a post was really negative or positive
(``badbuzz feedback``, topic ``feedback``); the worker checks it against what the model
said about that post id, keeps it, logs an Application Insights warning, and raises a
model-quality alert (through the same outbox) when too many predictions are reported
wrong in a short time.

Privacy: a feedback record holds the post id, the label, the prediction (score, label,
model version), a comment with handles and links replaced by placeholders, and times.
Never the post's text or its author.

Key layout (``P`` is the Redis prefix as a hash tag, ``{prefix}``, so on Redis Cluster all of it shares one slot):
``P:feedback:post:<post id>`` (the latest record,
JSON), ``P:feedback:wrong`` (post ids reported wrong, scored by submission time). Post ids
come from outside, so they live under their own ``post:`` namespace: no id, however
chosen, names another key."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import orjson
import redis.asyncio as aioredis

from alerting.alert import Alert, iso
from alerting.incidents import IncidentStore, model_quality_alert, next_incident
from alerting.rules import RuleConfig, Signal, decide_model_quality
from config.connections import shared_keyspace, transaction
from counting.counters import Counters, Prediction
from counting.windows import MINUTE_MS, minute_of
from models.preprocess import preprocess
from models.scorer import ModelInfo

LABELS = ("negative", "positive")
MAX_COMMENT_CHARS = 500
MAX_POST_ID_CHARS = 200
# The last millisecond of the year 9999, the last a timestamp can be written for.
MAX_SUBMITTED_AT_MS = 253_402_300_799_999
MODEL_SCOPE = "model"
EXAMPLES = 5

# Its own logger, so Application Insights' handler can be attached to feedback alone.
feedback_log = logging.getLogger("badbuzz.feedback")
log = logging.getLogger(__name__)


class InvalidFeedback(ValueError):
    pass


@dataclass(frozen=True)
class Feedback:
    post_id: str
    label: str  # negative | positive
    comment: str = ""
    submitted_at: int = 0  # epoch ms
    source: str = ""

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))


def scrub_comment(comment: str) -> str:
    """The comment with handles and links replaced (the shared text normaliser does
    exactly that), cut to a sane length."""
    return preprocess(comment)[:MAX_COMMENT_CHARS]


def make_feedback(post_id: str, label: str, comment: str = "", *, now_ms: int, source: str = "cli") -> Feedback:
    post_id = post_id.strip()
    if not post_id:
        raise InvalidFeedback("the post id is empty")
    if len(post_id) > MAX_POST_ID_CHARS:
        raise InvalidFeedback(f"the post id is longer than {MAX_POST_ID_CHARS} characters")
    if label not in LABELS:
        raise InvalidFeedback(f"label must be one of {', '.join(LABELS)}, got {label!r}")
    return Feedback(post_id, label, scrub_comment(comment or ""), now_ms, source)


def parse_feedback(raw: bytes | None) -> Feedback:
    """A feedback message off the topic; InvalidFeedback says what is wrong with it."""
    try:
        body = orjson.loads(raw or b"")
    except orjson.JSONDecodeError:
        raise InvalidFeedback("not a JSON object") from None
    if not isinstance(body, dict):
        raise InvalidFeedback("not a JSON object")
    post_id = body.get("post_id")
    if isinstance(post_id, bool) or not isinstance(post_id, (str, int)):
        raise InvalidFeedback("field 'post_id' must be a string or integer")
    comment = body.get("comment") or ""
    if not isinstance(comment, str):
        raise InvalidFeedback("field 'comment' must be a string")
    submitted = body.get("submitted_at")
    if isinstance(submitted, bool) or not isinstance(submitted, int):
        raise InvalidFeedback("field 'submitted_at' must be epoch milliseconds")
    if not 0 <= submitted <= MAX_SUBMITTED_AT_MS:
        raise InvalidFeedback("field 'submitted_at' is not a time between 1970 and 9999")
    source = body.get("source") if isinstance(body.get("source"), str) else ""
    # Scrubbed again: the topic may have other producers than our CLI.
    return make_feedback(str(post_id), body.get("label"), comment, now_ms=submitted, source=source)


def is_wrong(label: str, prediction: Prediction | None) -> bool | None:
    """Whether the model got it wrong (None: we do not know what it said)."""
    if prediction is None:
        return None
    return prediction.negative != (label == "negative")


class FeedbackStore:
    def __init__(self, redis: aioredis.Redis, *, prefix: str, ttl_s: int):
        self.redis = redis
        self.prefix = shared_keyspace(prefix)
        self.ttl_s = ttl_s

    def _key(self, post_id: str) -> str:
        return f"{self.prefix}:feedback:post:{post_id}"

    @property
    def _wrong_key(self) -> str:
        return f"{self.prefix}:feedback:wrong"

    async def record(self, feedback: Feedback, prediction: Prediction | None, info: ModelInfo, *, now_ms: int) -> dict:
        wrong = is_wrong(feedback.label, prediction)
        record = {
            "post_id": feedback.post_id,
            "label": feedback.label,
            "predicted_label": None if prediction is None else info.negative_label if prediction.negative else info.other_label,
            "predicted_score": None if prediction is None else round(prediction.score, 6),
            "model_version": None if prediction is None else prediction.model_version,
            "wrong": wrong,
            "comment": feedback.comment,
            "submitted_at": feedback.submitted_at,
            "received_at": now_ms,
            "source": feedback.source,
        }
        pipe = await transaction(self.redis)
        pipe.set(self._key(feedback.post_id), orjson.dumps(record), ex=self.ttl_s)
        # A later correction of the same post replaces the earlier one in the count.
        if wrong:
            pipe.zadd(self._wrong_key, {feedback.post_id: feedback.submitted_at})
        else:
            pipe.zrem(self._wrong_key, feedback.post_id)
        pipe.zremrangebyscore(self._wrong_key, "-inf", now_ms - self.ttl_s * 1000)
        pipe.expire(self._wrong_key, self.ttl_s)
        await pipe.execute()
        return record

    async def get(self, post_id: str) -> dict | None:
        raw = await self.redis.get(self._key(post_id))
        return None if raw is None else orjson.loads(raw)

    async def submitted_since(self, since_ms: int) -> list[dict]:
        """The records submitted at or after ``since_ms``, oldest first, the latest per
        post. Scans the keyspace: for offline jobs (report, retraining), never the worker."""
        wrong_key = self._wrong_key.encode()
        keys = [k async for k in self.redis.scan_iter(match=f"{self.prefix}:feedback:*", count=5000) if k != wrong_key]
        latest: dict[str, dict] = {}
        for start in range(0, len(keys), 1000):
            for raw in await self.redis.mget(keys[start : start + 1000]):
                if raw is None:
                    continue  # expired between the scan and the read
                record = orjson.loads(raw)
                if not isinstance(record, dict) or int(record.get("submitted_at") or 0) < since_ms:
                    continue
                post_id = str(record["post_id"])
                if post_id not in latest or int(record.get("received_at") or 0) >= int(latest[post_id].get("received_at") or 0):
                    latest[post_id] = record
        return sorted(latest.values(), key=lambda r: (r["submitted_at"], str(r["post_id"])))

    async def wrong_since(self, since_ms: int, until_ms: int) -> list[str]:
        """Post ids reported wrong in [since, until], newest first."""
        ids = await self.redis.zrevrangebyscore(self._wrong_key, until_ms, since_ms)
        return [i.decode() for i in ids]


class ModelQualityMonitor:
    """The model-quality signal: wrong-prediction feedbacks in the trailing window."""

    def __init__(self, store: FeedbackStore, incidents: IncidentStore, cfg: RuleConfig, model_info: Callable[[], ModelInfo]):
        self.store = store
        self.incidents = incidents
        self.cfg = cfg
        self.model_info = model_info

    async def check(self, now_ms: int) -> Alert | None:
        since = now_ms - self.cfg.model_window_min * MINUTE_MS
        wrong = await self.store.wrong_since(since, now_ms)
        minute = minute_of(now_ms)
        current = await self.incidents.get(MODEL_SCOPE, Signal.MODEL_QUALITY)
        decision = decide_model_quality(len(wrong), current.episode if current else None, minute, self.cfg)
        if decision is None:
            return None
        new = next_incident(current, Signal.MODEL_QUALITY, MODEL_SCOPE, decision, minute)
        info = self.model_info()
        alert = model_quality_alert(
            new,
            decision,
            start_ms=since,
            end_ms=now_ms,
            window_minutes=self.cfg.model_window_min,
            model=info.display,
            model_version=info.version_label,
            example_post_ids=wrong[:EXAMPLES],
            feedback_wrong=len(wrong),
            feedback_threshold=self.cfg.model_wrong_threshold,
        )
        if not await self.incidents.commit(current, new, alert, now_ms=now_ms):
            return None
        log.info("incident %s %s (%s): %d wrong-prediction feedbacks", new.id, alert.action, alert.severity, len(wrong))
        return alert


class FeedbackProcessor:
    def __init__(
        self,
        counters: Counters,
        store: FeedbackStore,
        monitor: ModelQualityMonitor,
        model_info: Callable[[], ModelInfo],
        *,
        clock: Callable[[], float] = time.time,
    ):
        self.counters = counters
        self.store = store
        self.monitor = monitor
        self.model_info = model_info
        self.clock = clock

    async def handle(self, raw: bytes | None) -> Alert | None:
        try:
            feedback = parse_feedback(raw)
        except InvalidFeedback as exc:
            log.warning("feedback message skipped: %s", exc)
            return None
        now_ms = int(self.clock() * 1000)
        prediction = await self.counters.prediction(feedback.post_id)
        record = await self.store.record(feedback, prediction, self.model_info(), now_ms=now_ms)
        _log_warning(record)
        return await self.monitor.check(now_ms)


def _log_warning(record: dict) -> None:
    verdict = {True: "wrong", False: "right", None: "unknown"}[record["wrong"]]
    feedback_log.warning(
        "feedback on prediction %s: true label %s, model said %s (%s)",
        record["post_id"],
        record["label"],
        record["predicted_label"] or "nothing we still know",
        verdict,
        extra={
            "custom_dimensions": {
                "prediction_id": record["post_id"],
                "true_label": record["label"],
                "predicted_label": record["predicted_label"] or "",
                "predicted_score": "" if record["predicted_score"] is None else str(record["predicted_score"]),
                "model_version": record["model_version"] or "",
                "verdict": verdict,
                "comment": record["comment"],
                "submitted_at": iso(record["submitted_at"]),
            }
        },
    )


async def send_feedback(settings, feedback: Feedback) -> None:
    """Put one feedback message on the feedback topic, keyed by post id."""
    from aiokafka import AIOKafkaProducer

    from config.connections import kafka_options
    from config.topics import ensure_topics

    await ensure_topics(settings, [settings.topic_feedback])
    producer = AIOKafkaProducer(**kafka_options(settings), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(settings.topic_feedback, key=feedback.post_id.encode(), value=feedback.to_json())
    finally:
        await producer.stop()
