"""Post ids come from outside: whatever they are ("wrong", ':', '*', braces, newlines,
the longest allowed), counting and feedback keep each post's data apart and never touch
an internal key. Against the real Redis, under a private prefix."""
from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import redis.asyncio as aioredis
from hypothesis import given, settings
from hypothesis import strategies as st

from alerting.feedback import MAX_POST_ID_CHARS, FeedbackProcessor, FeedbackStore, ModelQualityMonitor, make_feedback
from alerting.incidents import IncidentStore
from alerting.outbox import Outbox, OutboxConfig
from benchmarks.keys import delete_prefix
from config.connections import shared_keyspace
from counting.counters import Counters, ScoredPost
from models.scorer import ModelInfo
from tests.configs import DEFAULTS, rule_config

pytestmark = pytest.mark.integration

MODEL = ModelInfo("tfidf", "negative_vs_rest", 0.5, "badbuzz-sentiment", "3", "models:/badbuzz-sentiment/3")
PIECES = ["wrong", "post", "seen", "feedback", ":", "*", "?", "[", "]", "{", "}", "\n", "\r", "\\", "x", "1", "é", "\x00"]
hostile_id = st.one_of(
    st.sampled_from(["wrong", "post:wrong", ":wrong", "wrong:", "*", "{wrong}", "a\nb", "x" * MAX_POST_ID_CHARS]),
    st.lists(st.sampled_from(PIECES), min_size=1, max_size=40).map("".join),
).map(str.strip).filter(lambda i: 0 < len(i) <= MAX_POST_ID_CHARS)


@settings(max_examples=40)
@given(st.lists(st.tuples(hostile_id, st.booleans(), st.booleans()), min_size=1, max_size=12, unique_by=lambda t: t[0]))
def test_any_post_ids_keep_their_counts_predictions_and_feedback_apart(live_services, cases):
    """``cases``: (post id, the model said negative, the analyst says negative)."""
    asyncio.run(_check(live_services[1], cases))


async def _check(redis_url: str, cases) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    prefix = f"test:hostile:{uuid.uuid4().hex[:10]}"
    now = time.time()
    minute = int(now // 60)
    try:
        counters = Counters(redis, prefix=prefix, ttl_s=600)
        posts = [ScoredPost(post_id, minute * 60_000, 0.9 if said else 0.1, said, ["all"], []) for post_id, said, _ in cases]
        assert await counters.count(posts, model_version="3") == len(cases)
        assert await counters.count(posts, model_version="3") == 0
        # Predictions are kept for the posts an alert shows: the minute's five most
        # negative (equal scores: the smallest ids).
        shown = await counters.examples("all", range(minute, minute + 1), 5, keep=True)
        store = FeedbackStore(redis, prefix=prefix, ttl_s=600)
        outbox = Outbox(redis, prefix=prefix, sinks=["kafka"], cfg=OutboxConfig.from_settings(DEFAULTS))
        incidents = IncidentStore(redis, prefix=prefix, ttl_s=600, outbox=outbox)
        monitor = ModelQualityMonitor(store, incidents, rule_config(model_wrong_threshold=100), lambda: MODEL)
        processor = FeedbackProcessor(counters, store, monitor, lambda: MODEL, clock=lambda: now)
        for post_id, _, truth in cases:
            feedback = make_feedback(post_id, "negative" if truth else "positive", now_ms=int(now * 1000))
            await processor.handle(feedback.to_json())
        kept = set(sorted(post_id for post_id, said, _ in cases if said)[:5])
        assert set(shown) == kept
        wrong = {post_id for post_id, said, truth in cases if post_id in kept and not truth}
        assert set(await store.wrong_since(0, int(now * 1000))) == wrong
        assert await redis.type(f"{shared_keyspace(prefix)}:feedback:wrong") == (b"zset" if wrong else b"none")
        for post_id, _, truth in cases:
            record = await store.get(post_id)
            verdict = (not truth) if post_id in kept else None
            assert (record["post_id"], record["label"], record["wrong"]) == (post_id, "negative" if truth else "positive", verdict)
            prediction = await counters.prediction(post_id)
            assert (prediction.negative, prediction.model_version) == (True, "3") if post_id in kept else prediction is None
        assert (await counters.window("all", minute, 1)).total == len(cases)
    finally:
        await delete_prefix(redis, prefix)
        await redis.aclose()
