"""Hot model swap: a worker follows the registry without a restart.

What it serves (``target_from``): a pinned model (``BADBUZZ_MODEL_URI`` or ``--model``:
never watched), the newest registered version of one family (``BADBUZZ_MODEL_VARIANT``),
or the ``champion`` alias (the default). Every ``BADBUZZ_MODEL_POLL_S`` seconds the
watcher asks the registry which version that is, and also where the ``challenger`` alias
points (for shadow scoring). A new version is downloaded, loaded and warmed up in a
background thread while batches keep flowing; it is then *offered* to the ``ActiveModel``,
which the pipeline adopts at the start of its next batch. So a batch is scored by one
model from start to finish, every post by exactly one version, and that version is the
one stored with the post's prediction, shown by the metrics and named in alerts."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter

from config.settings import Settings
from models.registry import CHALLENGER, CHAMPION, ModelRegistry
from models.scorer import ModelError, ModelInfo, Scorer, load_scorer

log = logging.getLogger(__name__)

Listener = Callable[[Scorer, Scorer], None]


class ActiveModel:
    """The scorer a worker serves. A new one is offered at any time and adopted only
    between batches, by ``for_batch``."""

    def __init__(self, scorer: Scorer):
        self.current = scorer
        self.pending: Scorer | None = None
        self._listeners: list[Listener] = []

    @property
    def info(self) -> ModelInfo:
        return self.current.info

    def on_swap(self, listener: Listener) -> None:
        """``listener(old, new)`` runs when a new scorer is adopted."""
        self._listeners.append(listener)

    def offer(self, scorer: Scorer) -> None:
        """Serve ``scorer`` from the next batch on; a later offer replaces an unadopted one."""
        self.pending = scorer

    def for_batch(self) -> Scorer:
        """The scorer for the batch about to be scored (adopting an offered one first)."""
        if self.pending is not None:
            old, self.current, self.pending = self.current, self.pending, None
            for listener in self._listeners:
                listener(old, self.current)
        return self.current


@dataclass(frozen=True)
class ModelTarget:
    """What a worker serves: ``pinned_uri`` (never watched), else the newest version of
    ``family``, else the version behind ``alias``."""

    name: str
    pinned_uri: str = ""
    family: str = ""
    alias: str = CHAMPION

    @property
    def watched(self) -> bool:
        return not self.pinned_uri

    def describe(self) -> str:
        if self.pinned_uri:
            return f"pinned model {self.pinned_uri}"
        if self.family:
            return f"newest {self.family} version of {self.name}"
        return f"models:/{self.name}@{self.alias}"


def target_from(settings: Settings) -> ModelTarget:
    return ModelTarget(settings.model_name, pinned_uri=settings.model_uri, family=settings.model_variant)


class Registry:
    """The registry questions the watcher asks (blocking MLflow calls: run them in a thread)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.name = settings.model_name
        self.models = ModelRegistry.of(settings)

    def alias_version(self, alias: str) -> str | None:
        return self.models.alias_version(alias)

    def target_version(self, target: ModelTarget) -> str | None:
        return self.models.newest_of_family(target.family) if target.family else self.alias_version(target.alias)

    def load(self, version: str) -> Scorer:
        s = self.settings
        scorer = load_scorer(f"models:/{self.name}/{version}", tracking_uri=s.tracking_uri, cache_dir=s.home / "model-cache")
        # First calls pay for lazy initialisation (ONNX sessions, caches): not on a live batch.
        scorer.score_clean(["warming up the new model"])
        return scorer


def load_initial(settings: Settings) -> Scorer:
    """The scorer a worker starts with; ModelError says what is missing."""
    target = target_from(settings)
    s = settings
    if target.pinned_uri:
        return load_scorer(target.pinned_uri, tracking_uri=s.tracking_uri, cache_dir=s.home / "model-cache")
    if not target.family:
        return load_scorer(f"models:/{s.model_name}@{target.alias}", tracking_uri=s.tracking_uri, cache_dir=s.home / "model-cache")
    registry = Registry(settings)
    version = registry.models.newest_of_family(target.family)
    if version is None:
        raise ModelError(f"no registered {target.family} version of {s.model_name} (BADBUZZ_MODEL_VARIANT={target.family})")
    return registry.load(version)


class ModelWatcher:
    """Polls the registry; loads new versions off the event loop and offers them."""

    def __init__(
        self,
        settings: Settings,
        active: ActiveModel,
        *,
        registry: Registry | None = None,
        on_challenger: Callable[[Scorer | None], None] | None = None,
        metrics_registry: CollectorRegistry | None = None,
    ):
        self.settings = settings
        self.target = target_from(settings)
        self.active = active
        self.registry = registry or Registry(settings)
        self.on_challenger = on_challenger
        self.challenger_version: str | None = None
        self._failed: set[str] = set()
        # One thread of its own: a slow download never holds up scoring's executor.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-watch")
        self.swaps = Counter(
            "badbuzz_model_swaps", "Model versions this worker loaded from the registry, by outcome",
            ["role", "outcome"], registry=metrics_registry,
        )
        for role in (CHAMPION, CHALLENGER):
            for outcome in ("loaded", "failed"):
                self.swaps.labels(role, outcome)

    @property
    def enabled(self) -> bool:
        return self.target.watched and self.settings.model_poll_s > 0

    async def run(self) -> None:
        if not self.enabled:
            why = self.target.describe() if not self.target.watched else "BADBUZZ_MODEL_POLL_S=0"
            log.info("model watch off (%s)", why)
            return
        log.info("watching %s every %gs", self.target.describe(), self.settings.model_poll_s)
        while True:
            await self.check()
            await asyncio.sleep(self.settings.model_poll_s)

    async def check(self) -> None:
        """One poll: swap the served model and the challenger if the registry moved."""
        loop = asyncio.get_running_loop()
        try:
            wanted = await loop.run_in_executor(self._executor, self.registry.target_version, self.target)
        except Exception as exc:  # the registry being away must never stop the worker
            log.warning("model registry unreachable (%s); still serving %s", exc, self.active.info.display)
            return
        served = (self.active.pending or self.active.current).info.version
        if wanted is not None and wanted != served:
            scorer = await self._load(wanted, CHAMPION)
            if scorer is not None:
                log.info("model swap: loaded %s, serving it from the next batch (was %s)", scorer.info.display, self.active.info.display)
                self.active.offer(scorer)
        if self.on_challenger is not None:
            await self._check_challenger(loop)

    async def _check_challenger(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            version = await loop.run_in_executor(self._executor, self.registry.alias_version, CHALLENGER)
        except Exception as exc:
            log.warning("model registry unreachable for the challenger (%s)", exc)
            return
        if version == self.challenger_version:
            return
        if version is None:
            log.info("challenger alias removed: shadow scoring stops")
            self.challenger_version = None
            self.on_challenger(None)
            return
        scorer = await self._load(version, CHALLENGER)
        if scorer is not None:
            log.info("challenger: %s now shadow-scores a share of the traffic", scorer.info.display)
            self.challenger_version = version
            self.on_challenger(scorer)

    async def _load(self, version: str, role: str) -> Scorer | None:
        try:
            scorer = await asyncio.get_running_loop().run_in_executor(self._executor, self.registry.load, version)
        except Exception as exc:
            self.swaps.labels(role, "failed").inc()
            # Said once per version; it is retried at every poll in case the cause was passing.
            if version not in self._failed:
                self._failed.add(version)
                log.error("cannot load %s v%s as %s (%s); keeping what is served", self.registry.name, version, role, exc)
            return None
        self._failed.discard(version)
        self.swaps.labels(role, "loaded").inc()
        return scorer
