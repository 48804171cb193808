"""The texts the console shows beside an alert: kept, masked, only for the posts that can
become examples (a minute's most negative posts per scope), for the counters' retention."""
from __future__ import annotations

import time
import uuid

import numpy as np
import orjson
import pytest
import redis.asyncio as aioredis

from benchmarks.keys import delete_prefix
from config.settings import Settings
from counting.counters import Counters, ScoredPost, ShownPost, example_candidates, partition_tag
from models.scorer import ModelInfo
from stream.model_watch import ActiveModel
from stream.pipeline import Pipeline, PipelineConfig, RawMessage

pytestmark = pytest.mark.integration

TTL_S = 600


class LengthScorer:
    """P(negative) from the number of words, so each post's score is recognisable."""

    info = ModelInfo("tfidf", "negative_vs_rest", 0.5, "m", "1", "models:/m/1")

    def score_clean(self, texts):
        return np.array([min(1.0, len(t.split()) / 10) for t in texts])


class NoEscalation:
    async def evaluate(self, minute, touched=None):
        return []


async def no_dead_letters(message, reason):
    raise AssertionError(f"unexpected dead letter: {reason}")


def test_candidates_are_each_scope_and_minutes_best_with_ties():
    def post(i, score, scopes, minute=1, negative=True):
        return ScoredPost(f"p{i}", minute * 60_000, score, negative, scopes, ())

    posts = [
        post(0, 0.9, ["all"]),
        post(1, 0.8, ["all", "term:delay"]),
        post(2, 0.8, ["all"]),  # tied with the second best of "all"
        post(3, 0.7, ["all"]),
        post(4, 0.6, ["all", "term:delay"]),  # second best of "term:delay"
        post(5, 0.5, ["all", "term:delay"]),
        post(6, 0.4, ["all"], minute=2),  # the best of another minute
        post(7, 0.99, ["all"], negative=False),
    ]
    assert example_candidates(posts, 2) == {0, 1, 2, 4, 6}


async def test_the_pipeline_keeps_the_masked_text_and_link_of_example_candidates_only(live_services):
    redis = aioredis.Redis.from_url(live_services[1])
    prefix = f"test:shown:{uuid.uuid4().hex[:10]}"
    counters = Counters(redis, prefix=prefix, ttl_s=TTL_S, examples_per_minute=2)
    pipeline = Pipeline(
        PipelineConfig.from_settings(Settings(watch_terms=[])), ActiveModel(LengthScorer()), counters, NoEscalation(), no_dead_letters,
    )
    now_ms = int(time.time() * 1000)
    minute = now_ms // 60_000

    def raw(post_id: str, text: str, **extra) -> RawMessage:
        return RawMessage(orjson.dumps({"id": post_id, "text": text, **extra}), timestamp_ms=minute * 60_000 + 1000)

    try:
        await pipeline.process([
            raw("ten", "@AirParadis my flight was cancelled twice, see https://x.test/a now!! today", url="https://feed.test/p/ten"),
            raw("nine", "Lost my bag &amp; nobody at desk helps, @bob_1"),
            raw("six", "delayed again and again, sigh"),
            raw("three", "nice crew today"),
        ])
        kept = await counters.shown(["ten", "nine", "six", "three"])
        assert kept == {
            "ten": ShownPost("@user my flight was cancelled twice, see <url> now!! today", "https://feed.test/p/ten"),
            "nine": ShownPost("Lost my bag & nobody at desk helps, @user", None),
            "six": None,
            "three": None,
        }
        assert await counters.examples("all", range(minute, minute + 1), 5) == ["ten", "nine"]
        assert 0 < await redis.ttl(f"{partition_tag(prefix, 0)}:post:ten") <= TTL_S

        # A redelivered post is not counted or kept again; a new best one is.
        await pipeline.process([raw("nine", "changed text, six words here"), raw("eleven", "one two three four five six seven eight nine ten eleven")])
        kept = await counters.shown(["nine", "eleven"])
        assert kept == {"nine": ShownPost("Lost my bag & nobody at desk helps, @user", None), "eleven": ShownPost(
            "one two three four five six seven eight nine ten eleven", None)}
    finally:
        await delete_prefix(redis, prefix)
        await redis.aclose()
