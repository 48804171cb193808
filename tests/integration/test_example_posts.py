"""The texts the console shows beside an alert: a minute's examples (its most negative
posts per scope) carry them, masked; those an alert shows are kept apart for the
counters' retention."""
from __future__ import annotations

import time
import uuid

import numpy as np
import orjson
import pytest
import redis.asyncio as aioredis

from benchmarks.keys import delete_prefix
from config.settings import Settings
from counting.counters import Counters, ShownPost, partition_tag
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
    async def evaluate(self, minute, touched=None, since=None):
        return []


async def no_dead_letters(message, reason):
    raise AssertionError(f"unexpected dead letter: {reason}")


async def test_the_masked_text_and_link_of_the_examples_an_alert_shows_are_kept(live_services):
    redis = aioredis.Redis.from_url(live_services[1])
    prefix = f"test:shown:{uuid.uuid4().hex[:10]}"
    counters = Counters(redis, prefix=prefix, ttl_s=TTL_S, examples_per_minute=2)
    pipeline = Pipeline(
        PipelineConfig.from_settings(Settings(watch_terms=[])), ActiveModel(LengthScorer()), counters, NoEscalation(), no_dead_letters,
    )
    now_ms = int(time.time() * 1000)
    minute = now_ms // 60_000
    this_minute = range(minute, minute + 1)

    def raw(post_id: str, text: str, **extra) -> RawMessage:
        return RawMessage(orjson.dumps({"id": post_id, "text": text, **extra}), timestamp_ms=minute * 60_000 + 1000)

    try:
        await pipeline.process([
            raw("ten", "@AirParadis my flight was cancelled twice, see https://x.test/a now!! today", url="https://feed.test/p/ten"),
            raw("nine", "Lost my bag &amp; nobody at desk helps, @bob_1"),
            raw("six", "delayed again and again, sigh"),
            raw("three", "nice crew today"),
        ])
        # The minute's examples hold what may be shown of them; nothing is kept apart yet.
        assert await counters.shown(["ten", "nine"]) == {"ten": None, "nine": None}
        # An alert shows them: kept, masked, for the counters' retention.
        assert await counters.examples("all", this_minute, 5, keep=True) == ["ten", "nine"]
        kept = await counters.shown(["ten", "nine", "six", "three"])
        assert kept == {
            "ten": ShownPost("@user my flight was cancelled twice, see <url> now!! today", "https://feed.test/p/ten"),
            "nine": ShownPost("Lost my bag & nobody at desk helps, @user", None),
            "six": None,
            "three": None,
        }
        assert (await counters.prediction("nine")).negative and await counters.prediction("six") is None
        assert 0 < await redis.ttl(f"{partition_tag(prefix, 0)}:post:ten") <= TTL_S

        # Better posts push them out of the minute's examples: what the alert showed stays.
        # A redelivered post is not counted or kept again.
        eleven = "one two three four five six seven eight nine ten eleven"
        await pipeline.process([raw("nine", "changed text, six words here"), raw("eleven", eleven), raw("a-best", eleven)])
        assert await counters.examples("all", this_minute, 5) == ["a-best", "eleven"]
        assert (await counters.shown(["nine"]))["nine"] == ShownPost("Lost my bag & nobody at desk helps, @user", None)
        assert (await counters.window("all", minute, 1)).total == 6
        # Another process (a worker that took the partition over) keeps them the same.
        other = Counters(redis, prefix=prefix, ttl_s=TTL_S, examples_per_minute=2)
        assert await other.examples("all", this_minute, 1, keep=True) == ["a-best"]
        assert await counters.shown(["a-best", "eleven"]) == {"a-best": ShownPost(eleven, None), "eleven": None}
    finally:
        await delete_prefix(redis, prefix)
        await redis.aclose()
