"""Shadow scoring: which posts, how they are compared, and that the primary path never
waits for the challenger."""
import asyncio

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from models.scorer import ModelInfo
from stream.pipeline import ScoredBatch
from stream.shadow import PairTotals, ShadowScorer, compare, in_sample


class FixedScorer:
    """Scores every post with the same value; counts calls."""

    def __init__(self, version: str, score: float, *, fail: bool = False):
        self.info = ModelInfo("tfidf", "negative_vs_rest", 0.5, "m", version, f"models:/m/{version}")
        self.score = score
        self.fail = fail
        self.calls: list[list[str]] = []

    def score_clean(self, texts):
        self.calls.append(list(texts))
        if self.fail:
            raise RuntimeError("boom")
        return np.full(len(texts), self.score)


def batch(ids, scores, version="1"):
    return ScoredBatch(list(ids), [f"text of {i}" for i in ids], np.asarray(scores, dtype=float), FixedScorer(version, 0).info, 0.01)


def sample_value(registry, name, labels=None):
    return registry.get_sample_value(name, labels or {})


def test_the_sample_is_deterministic_nested_and_of_the_right_size():
    ids = [f"post-{i}" for i in range(20_000)]
    tenth = {i for i in ids if in_sample(i, 0.1)}
    half = {i for i in ids if in_sample(i, 0.5)}
    assert tenth == {i for i in ids if in_sample(i, 0.1)}
    assert tenth <= half  # raising the fraction only adds posts
    assert abs(len(tenth) - 2_000) < 150 and abs(len(half) - 10_000) < 300
    assert not any(in_sample(i, 0.0) for i in ids[:100]) and all(in_sample(i, 1.0) for i in ids[:100])


def test_compare_counts_agreement_deltas_and_negatives_with_each_threshold():
    totals = compare([0.9, 0.2, 0.6, 0.4], [0.8, 0.7, 0.3, 0.45], 0.5, 0.5, champion_s=0.004, challenger_s=0.002)
    assert totals == PairTotals(posts=4, agreed=2, abs_delta=pytest.approx(0.1 + 0.5 + 0.3 + 0.05), champion_negative=2,
                                challenger_negative=2, champion_s=0.004, challenger_s=0.002)
    assert totals.agreement == 0.5
    assert totals.mean_abs_delta == pytest.approx(0.2375)
    assert totals.champion_ms_per_post == pytest.approx(1.0) and totals.challenger_ms_per_post == pytest.approx(0.5)
    assert (PairTotals() + totals) == totals
    assert PairTotals().as_dict()["agreement"] is None


async def test_only_sampled_posts_are_queued_and_scored_by_the_challenger():
    registry = CollectorRegistry()
    shadow = ShadowScorer(0.5, queue_batches=4, store=None, metrics_registry=registry)
    ids = [f"id-{i}" for i in range(200)]
    shadow.observe(batch(ids, [0.9] * 200))
    assert shadow.queue.qsize() == 0  # no challenger yet
    challenger = FixedScorer("2", 0.1)
    shadow.set_challenger(challenger)
    shadow.observe(batch(ids, [0.9] * 200))
    picked = [i for i in ids if in_sample(i, 0.5)]
    job = shadow.queue.get_nowait()
    assert job.ids == picked and job.clean == [f"text of {i}" for i in picked]
    totals = await shadow.score(job)
    assert challenger.calls == [job.clean]
    assert (totals.posts, totals.agreed, totals.champion_negative, totals.challenger_negative) == (len(picked), 0, len(picked), 0)
    assert sample_value(registry, "badbuzz_shadow_posts_total", {"outcome": "scored"}) == len(picked)
    assert sample_value(registry, "badbuzz_shadow_agreements_total") == 0
    assert sample_value(registry, "badbuzz_shadow_abs_score_delta_total") == pytest.approx(0.8 * len(picked))
    assert sample_value(registry, "badbuzz_model_post_scoring_seconds_count", {"role": "challenger", "version": "2"}) == 1
    assert sample_value(registry, "badbuzz_model_post_scoring_seconds_count", {"role": "champion", "version": "1"}) == 2


def test_a_challenger_that_is_the_served_model_is_not_compared_with_itself():
    shadow = ShadowScorer(1.0, queue_batches=4, store=None, metrics_registry=CollectorRegistry())
    shadow.set_challenger(FixedScorer("1", 0.2))
    shadow.observe(batch(["a", "b"], [0.1, 0.2], version="1"))
    assert shadow.queue.qsize() == 0


def test_a_full_queue_drops_shadow_work_instead_of_waiting():
    registry = CollectorRegistry()
    shadow = ShadowScorer(1.0, queue_batches=1, store=None, metrics_registry=registry)
    shadow.set_challenger(FixedScorer("2", 0.5))
    shadow.observe(batch(["a", "b", "c"], [0.1, 0.2, 0.3]))
    shadow.observe(batch(["d", "e"], [0.1, 0.2]))  # returns at once: nothing consumes the queue
    assert shadow.queue.qsize() == 1
    assert sample_value(registry, "badbuzz_shadow_posts_total", {"outcome": "dropped"}) == 2
    assert sample_value(registry, "badbuzz_shadow_queue_batches") == 1


async def test_a_failing_challenger_is_counted_and_does_not_raise():
    registry = CollectorRegistry()
    shadow = ShadowScorer(1.0, queue_batches=2, store=None, metrics_registry=registry)
    shadow.set_challenger(FixedScorer("2", 0.5, fail=True))
    shadow.observe(batch(["a", "b"], [0.1, 0.2]))
    assert await shadow.score(shadow.queue.get_nowait()) is None
    assert sample_value(registry, "badbuzz_shadow_posts_total", {"outcome": "failed"}) == 2


async def test_the_background_task_drains_the_queue():
    shadow = ShadowScorer(1.0, queue_batches=8, store=None, metrics_registry=CollectorRegistry())
    challenger = FixedScorer("2", 0.5)
    shadow.set_challenger(challenger)
    for n in range(3):
        shadow.observe(batch([f"p{n}-{i}" for i in range(5)], [0.6] * 5))
    task = asyncio.create_task(shadow.run())
    await asyncio.wait_for(shadow.queue.join(), 5)
    task.cancel()
    assert [len(call) for call in challenger.calls] == [5, 5, 5]
