"""A redelivered post is counted once, and the batch observers (shadow scoring, drift)
see it once too: their statistics must not double on an at-least-once redelivery."""
from __future__ import annotations

import time
import uuid

import numpy as np
import orjson
import pytest
import redis.asyncio as aioredis

from benchmarks.keys import delete_prefix
from config.settings import Settings
from counting.counters import Counters
from models.scorer import ModelInfo
from stream.model_watch import ActiveModel
from stream.pipeline import Pipeline, PipelineConfig, RawMessage, ScoredBatch

pytestmark = pytest.mark.integration


class LengthScorer:
    """P(negative) from the number of words, so each post's score is recognisable."""

    info = ModelInfo("tfidf", "negative_vs_rest", 0.5, "m", "1", "models:/m/1")

    def score_clean(self, texts):
        return np.array([len(t.split()) / 10 for t in texts])


class NoEscalation:
    async def evaluate(self, minute, touched=None, since=None):
        return []


async def no_dead_letters(message, reason):
    raise AssertionError(f"unexpected dead letter: {reason}")


def raw(post_id: str, text: str) -> RawMessage:
    return RawMessage(orjson.dumps({"id": post_id, "text": text}), timestamp_ms=int(time.time() * 1000))


async def test_observers_see_only_posts_counted_for_the_first_time(live_services):
    redis = aioredis.Redis.from_url(live_services[1])
    prefix = f"test:once:{uuid.uuid4().hex[:10]}"
    seen: list[ScoredBatch] = []
    pipeline = Pipeline(
        PipelineConfig.from_settings(Settings(watch_terms=[])), ActiveModel(LengthScorer()), Counters(redis, prefix=prefix, ttl_s=600), NoEscalation(),
        no_dead_letters, [seen.append],
    )
    try:
        await pipeline.start()
        first = await pipeline.process([raw("a", "late"), raw("b", "late again"), raw("a", "late")])
        # Redelivered after a crash: a and b again, with c new in between.
        second = await pipeline.process([raw("b", "late again"), raw("c", "late once more"), raw("a", "late")])
        third = await pipeline.process([raw("c", "late once more")])
        assert (first.counted, second.counted, third.counted) == (2, 1, 0)
        assert [(b.ids, list(b.scores)) for b in seen] == [(["a", "b"], [0.1, 0.2]), (["c"], [0.3])]
        assert [b.clean for b in seen] == [["late", "late again"], ["late once more"]]
        # Each observed post carries its share of its batch's scoring time.
        assert seen[1].scoring_s == pytest.approx(second.scoring_s / 3)
    finally:
        await delete_prefix(redis, prefix)
        await redis.aclose()
