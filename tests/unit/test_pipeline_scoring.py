"""Where the pipeline scores a batch: on the event loop when the model is known to be
quick, in a thread otherwise (a slow model must not stall Faust's loop)."""
from __future__ import annotations

import threading
import time

import numpy as np
from test_model_watch import NoEscalation, RecordingCounters, Scorer, messages, no_dead_letters

from config.settings import Settings
from stream import pipeline as pipeline_module
from stream.model_watch import ActiveModel


class TimedScorer(Scorer):
    """Burns ``cpu_s_per_post`` of CPU per post and records the thread it ran on."""

    def __init__(self, version: str, cpu_s_per_post: float):
        super().__init__(version)
        self.cpu_s_per_post = cpu_s_per_post
        self.threads: list[str] = []

    def score_clean(self, texts):
        self.threads.append("loop" if threading.current_thread() is threading.main_thread() else "executor")
        until = time.thread_time() + self.cpu_s_per_post * len(texts)
        while time.thread_time() < until:
            pass
        return np.full(len(texts), 0.9)


def _pipeline(active: ActiveModel) -> pipeline_module.Pipeline:
    return pipeline_module.Pipeline(
        pipeline_module.PipelineConfig.from_settings(Settings(watch_terms=[])), active, RecordingCounters(), NoEscalation(), no_dead_letters
    )


async def _run(pipeline: pipeline_module.Pipeline, batches: int, per_batch: int = 10) -> None:
    for b in range(batches):
        result = await pipeline.process(messages([f"{b}-{i}" for i in range(per_batch)]))
        assert result.counted == per_batch and result.scoring_s > 0


async def test_a_quick_model_is_timed_once_in_a_thread_then_scores_on_the_loop(monkeypatch):
    monkeypatch.setattr(pipeline_module, "INLINE_SCORING_S", 0.05)
    quick = TimedScorer("1", cpu_s_per_post=0.0002)  # 2 ms a batch of 10
    await _run(_pipeline(ActiveModel(quick)), batches=4)
    assert quick.threads == ["executor", "loop", "loop", "loop"]


async def test_a_slow_model_always_scores_off_the_loop(monkeypatch):
    monkeypatch.setattr(pipeline_module, "INLINE_SCORING_S", 0.005)
    slow = TimedScorer("1", cpu_s_per_post=0.002)  # 20 ms a batch of 10
    await _run(_pipeline(ActiveModel(slow)), batches=3)
    assert slow.threads == ["executor"] * 3


async def test_a_new_model_is_timed_afresh(monkeypatch):
    monkeypatch.setattr(pipeline_module, "INLINE_SCORING_S", 0.05)
    first, second = TimedScorer("1", 0.0002), TimedScorer("2", 0.0002)
    active = ActiveModel(first)
    pipeline = _pipeline(active)
    await _run(pipeline, batches=2)
    active.offer(second)
    await _run(pipeline, batches=2)
    assert first.threads == ["executor", "loop"] and second.threads == ["executor", "loop"]
