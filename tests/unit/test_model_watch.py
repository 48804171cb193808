"""Hot swap: a new model is adopted between batches only, and the watcher follows the
registry without ever stopping the worker."""
import logging
import time

import numpy as np
import orjson
from prometheus_client import CollectorRegistry

from config.settings import Settings
from models.scorer import ModelInfo
from stream.model_watch import ActiveModel, ModelTarget, ModelWatcher, target_from
from stream.pipeline import Pipeline, PipelineConfig, RawMessage


class Scorer:
    def __init__(self, version: str, score: float = 0.9, on_score=None):
        self.info = ModelInfo("tfidf", "negative_vs_rest", 0.5, "m", version, f"models:/m/{version}")
        self.score = score
        self.on_score = on_score

    def score_clean(self, texts):
        if self.on_score is not None:
            self.on_score()
        return np.full(len(texts), self.score)


class RecordingCounters:
    def __init__(self):
        self.calls = []

    async def watermark_ms(self):
        return 0

    async def count_new(self, posts, *, model_version="", shown=None, **source):
        self.calls.append(([p.id for p in posts], model_version))
        return list(range(len(posts)))

    async def count_batch(self, parts, *, model_version=""):
        return {part.partition: await self.count_new(part.posts, model_version=model_version, shown=part.shown) for part in parts}


class NoEscalation:
    async def evaluate(self, minute, touched=None, since=None):
        return []


async def no_dead_letters(message, reason):
    raise AssertionError(reason)


def messages(ids):
    now_ms = int(time.time() * 1000)
    return [RawMessage(orjson.dumps({"id": i, "text": f"flight {i} delayed"}), timestamp_ms=now_ms) for i in ids]


def test_an_offer_is_adopted_by_the_next_batch_and_announced_once():
    v1, v2, v3 = Scorer("1"), Scorer("2"), Scorer("3")
    active = ActiveModel(v1)
    swaps = []
    active.on_swap(lambda old, new: swaps.append((old.info.version, new.info.version)))
    active.offer(v2)
    assert active.info.version == "1"  # nothing changes until a batch starts
    active.offer(v3)  # a later offer replaces one not yet adopted
    assert active.for_batch() is v3
    assert active.for_batch() is v3
    assert swaps == [("1", "3")]


async def test_a_swap_offered_mid_batch_waits_for_the_next_batch():
    active = ActiveModel(Scorer("1"))
    v2 = Scorer("2")
    active.current.on_score = lambda: active.offer(v2)  # the watcher offers while v1 scores
    counters = RecordingCounters()
    seen = []
    pipeline = Pipeline(
        PipelineConfig.from_settings(Settings(watch_terms=[])), active, counters, NoEscalation(), no_dead_letters, [lambda b: seen.append(b.model.version)]
    )
    await pipeline.process(messages(["a", "b"]))
    await pipeline.process(messages(["c"]))
    assert counters.calls == [(["a", "b"], "1"), (["c"], "2")]
    assert seen == ["1", "2"]
    assert pipeline.scorer is v2


def test_what_is_served_follows_the_settings():
    assert target_from(Settings(model_uri="/srv/bundle")) == ModelTarget("badbuzz-sentiment", pinned_uri="/srv/bundle")
    assert not target_from(Settings(model_uri="/srv/bundle")).watched
    assert target_from(Settings(model_variant="gru")).describe() == "newest gru version of badbuzz-sentiment"
    assert target_from(Settings()).describe() == "models:/badbuzz-sentiment@champion"


class FakeRegistry:
    name = "m"

    def __init__(self):
        self.aliases = {"champion": "1"}
        self.unreachable = False
        self.broken: set[str] = set()
        self.loaded: list[str] = []

    def _check(self):
        if self.unreachable:
            raise ConnectionError("registry down")

    def target_version(self, target):
        self._check()
        return self.aliases.get(target.alias)

    def alias_version(self, alias):
        self._check()
        return self.aliases.get(alias)

    def load(self, version):
        if version in self.broken:
            raise RuntimeError(f"v{version} is broken")
        self.loaded.append(version)
        return Scorer(version)


def watcher_for(registry, *, shadow=None):
    active = ActiveModel(Scorer("1"))
    metrics = CollectorRegistry()
    watcher = ModelWatcher(Settings(model_poll_s=1), active, registry=registry, on_challenger=shadow, metrics_registry=metrics)
    return active, watcher, metrics


async def test_the_watcher_offers_a_new_champion_and_ignores_an_unchanged_one():
    registry = FakeRegistry()
    active, watcher, metrics = watcher_for(registry)
    await watcher.check()
    assert registry.loaded == [] and active.pending is None
    registry.aliases["champion"] = "2"
    await watcher.check()
    assert active.pending.info.version == "2"
    await watcher.check()  # already offered: not loaded again
    assert registry.loaded == ["2"]
    assert metrics.get_sample_value("badbuzz_model_swaps_total", {"role": "champion", "outcome": "loaded"}) == 1


async def test_registry_and_load_failures_keep_the_served_model(caplog):
    registry = FakeRegistry()
    active, watcher, metrics = watcher_for(registry)
    registry.unreachable = True
    registry.aliases["champion"] = "2"
    with caplog.at_level(logging.WARNING):
        await watcher.check()
    assert "model registry unreachable (registry down); still serving m v1 (tfidf)" in caplog.text
    registry.unreachable = False
    registry.broken.add("2")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        await watcher.check()
        await watcher.check()
    assert caplog.text.count("cannot load m v2 as champion (v2 is broken); keeping what is served") == 1
    assert active.pending is None and active.for_batch().info.version == "1"
    assert metrics.get_sample_value("badbuzz_model_swaps_total", {"role": "champion", "outcome": "failed"}) == 2


async def test_the_challenger_is_set_and_removed_with_its_alias():
    registry = FakeRegistry()
    seen = []
    _, watcher, _ = watcher_for(registry, shadow=lambda scorer: seen.append(None if scorer is None else scorer.info.version))
    await watcher.check()
    registry.aliases["challenger"] = "3"
    await watcher.check()
    await watcher.check()
    del registry.aliases["challenger"]
    await watcher.check()
    assert seen == ["3", None]


async def test_a_pinned_model_is_not_watched(caplog):
    active = ActiveModel(Scorer("1"))
    watcher = ModelWatcher(Settings(model_uri="/srv/bundle", model_poll_s=1), active, registry=FakeRegistry(), metrics_registry=CollectorRegistry())
    assert not watcher.enabled
    with caplog.at_level(logging.INFO):
        await watcher.run()  # returns at once
    assert "model watch off (pinned model /srv/bundle)" in caplog.text
