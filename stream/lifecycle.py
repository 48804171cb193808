"""The model lifecycle inside a worker, wired onto the Faust app: the registry watch (hot
swap, ``stream.model_watch``), shadow scoring by the challenger (``stream.shadow``) and
the drift watch (``stream.drift_monitor``). Each runs as a background task; the pipeline
only calls their cheap observers after counting a batch."""
from __future__ import annotations

import logging

import faust

from alerting.runtime import AlertingRuntime
from config.settings import Settings
from models.scorer import Scorer
from stream.drift_monitor import DriftMonitor, DriftStore, DriftThresholds
from stream.heap import freeze_long_lived_objects
from stream.metrics import Metrics
from stream.model_watch import ActiveModel, ModelWatcher
from stream.pipeline import BatchObserver
from stream.shadow import ShadowScorer, ShadowStore

log = logging.getLogger(__name__)


def register(app: faust.App, settings: Settings, active: ActiveModel, metrics: Metrics, alerting: AlertingRuntime) -> list[BatchObserver]:
    """Start the lifecycle tasks with the app; return the pipeline's batch observers."""
    registry = metrics.registry
    shadow = ShadowScorer(settings.shadow_fraction, queue_batches=settings.shadow_queue_batches, store=None, metrics_registry=registry)
    drift = DriftMonitor(lambda: active.info, DriftThresholds.from_settings(settings), min_posts=settings.drift_min_posts, metrics_registry=registry)
    watcher = ModelWatcher(
        settings, active, on_challenger=shadow.set_challenger if settings.shadow_fraction > 0 else None, metrics_registry=registry
    )

    def swapped(old: Scorer, new: Scorer) -> None:
        metrics.set_model(new.info)
        freeze_long_lived_objects()
        log.info("model swap: now serving %s (was %s)", new.info.display, old.info.display)

    active.on_swap(swapped)

    @app.task
    async def watch_models() -> None:
        await watcher.run()

    @app.task
    async def shadow_scoring() -> None:
        shadow.store = ShadowStore(alerting.redis, prefix=settings.redis_prefix)
        await shadow.run()

    @app.task
    async def watch_drift() -> None:
        drift.attach(DriftStore(alerting.redis, prefix=settings.redis_prefix, window_min=settings.drift_window_min), alerting.incidents)
        await drift.run(settings.drift_check_s)

    return [shadow.observe, drift.observe]
