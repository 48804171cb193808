"""The retraining loop: feedback since the champion was trained -> a new version of the
configured family -> ``challenger`` -> ``champion`` only through the promotion gate.

``badbuzz retrain`` always runs; ``--if-needed`` first asks the trigger policy (any one is
enough): at least ``BADBUZZ_RETRAIN_MIN_FEEDBACK`` feedback records since the champion's
training run started; the champion's accuracy on that feedback below
``BADBUZZ_RETRAIN_MIN_ACCURACY`` (once ``BADBUZZ_RETRAIN_MIN_VERDICTS`` of its predictions
have a verdict); or a drift alert since then.

The new version trains on the champion's own data, label scheme and ``--limit`` (read
from its run), so its held-out test set is the champion's and the gate can compare them;
feedback joins the training part only (``training.feedback``). The feedback store keeps
post ids and labels, never texts: the texts come back from the raw topic at training time."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson
import redis.asyncio as aioredis

from alerting.feedback import FeedbackStore
from config.settings import Settings
from models.registry import CHALLENGER, CHAMPION, ModelRegistry
from stream.drift_monitor import DriftStore
from training import registry_ops

Progress = Callable[[str], object]


@dataclass(frozen=True)
class FeedbackFacts:
    """Feedback since the last training, as the policy sees it."""

    records: int
    verdicts: int  # champion predictions the feedback confirms or contradicts
    correct: int

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.verdicts if self.verdicts else None


@dataclass(frozen=True)
class RetrainDecision:
    run: bool
    reasons: tuple[str, ...]
    feedback: FeedbackFacts
    drift_alerts: int
    since_ms: int


def decide(feedback: FeedbackFacts, drift_alerts: int, since_ms: int, settings: Settings) -> RetrainDecision:
    """The trigger policy (pure): which of its conditions hold."""
    s = settings
    reasons = []
    if feedback.records >= s.retrain_min_feedback:
        reasons.append(f"{feedback.records} feedback records since the last training (threshold {s.retrain_min_feedback})")
    accuracy = feedback.accuracy
    if accuracy is not None and feedback.verdicts >= s.retrain_min_verdicts and accuracy < s.retrain_min_accuracy:
        reasons.append(
            f"champion accuracy on feedback {accuracy:.1%} over {feedback.verdicts} verdicts, below {s.retrain_min_accuracy:.1%}"
        )
    if drift_alerts:
        reasons.append(f"{drift_alerts} drift alert(s) since the last training")
    return RetrainDecision(bool(reasons), tuple(reasons), feedback, drift_alerts, since_ms)


def feedback_facts(records: Sequence[dict], champion_version: str) -> FeedbackFacts:
    """Accuracy counts only verdicts on the champion's own predictions."""
    mine = [r for r in records if r.get("wrong") is not None and str(r.get("model_version")) == champion_version]
    return FeedbackFacts(len(records), len(mine), sum(1 for r in mine if r["wrong"] is False))


async def drift_alerts_since(redis: aioredis.Redis, prefix: str, since_ms: int) -> int:
    store = DriftStore(redis, prefix=prefix, window_min=1)
    return len(await store.alerts_since(since_ms))


def write_training_feedback(records: Sequence[dict], path: Path) -> int:
    """The JSON lines ``badbuzz train --feedback`` reads: post id and label only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        for record in records:
            out.write(orjson.dumps({"post_id": str(record["post_id"]), "label": record["label"]}) + b"\n")
    return len(records)


@dataclass(frozen=True)
class Champion:
    version: str
    run_id: str
    started_ms: int
    data: str
    scheme: str
    limit: int | None


def champion_of(registry: ModelRegistry) -> Champion:
    version = registry.alias_version(CHAMPION)
    if version is None:
        raise ValueError(f"{registry.name} has no champion: promote a version first (badbuzz promote --version V)")
    run = registry.run(registry.version(version).run_id)
    params = run.params
    limit = params.get("limit", "None")
    return Champion(
        version=version,
        run_id=run.run_id,
        started_ms=run.started_ms,
        data=params.get("data", "airline"),
        scheme=params.get("scheme", "negative_vs_rest"),
        limit=None if limit in ("None", "") else int(limit),
    )


@dataclass(frozen=True)
class RetrainResult:
    decision: RetrainDecision
    champion: Champion
    version: str | None = None  # the new version, None when the policy said no
    promoted: bool = False
    refusals: tuple[str, ...] = ()
    comparison: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)


COMPARED = ("test_accuracy", "test_recall_negative", "test_precision_negative", "test_f1_negative", "test_roc_auc", "latency_p50_ms")


def retrain(
    settings: Settings,
    *,
    if_needed: bool = False,
    since_ms: int | None = None,
    progress: Progress = print,
    now: Callable[[], float] = time.time,
) -> RetrainResult:
    from config.connections import redis_client
    from training.train import require_family, train

    s = settings
    # Before reading feedback or writing its file: a missing extra would only fail later.
    require_family(s.retrain_family)
    registry = ModelRegistry.of(s)
    champion = champion_of(registry)
    since = champion.started_ms if since_ms is None else since_ms

    async def gather() -> tuple[list[dict], int]:
        redis = redis_client(s)
        try:
            feedback = FeedbackStore(redis, prefix=s.redis_prefix, ttl_s=s.feedback_ttl_s)
            return await feedback.submitted_since(since), await drift_alerts_since(redis, s.redis_prefix, since)
        finally:
            await redis.aclose()

    records, drift_alerts = asyncio.run(gather())
    decision = decide(feedback_facts(records, champion.version), drift_alerts, since, s)
    facts = decision.feedback
    accuracy = "-" if facts.accuracy is None else f"{facts.accuracy:.1%}"
    progress(
        f"since {_iso(since)} (champion v{champion.version} trained): {facts.records} feedback records, "
        f"champion right on {facts.correct}/{facts.verdicts} ({accuracy}), {drift_alerts} drift alert(s)"
    )
    if if_needed and not decision.run:
        progress("no retraining needed: no trigger reached")
        return RetrainResult(decision, champion)
    for reason in decision.reasons:
        progress(f"trigger: {reason}")

    feedback_path = None
    if records:
        feedback_path = s.home / "retrain" / f"feedback-{time.strftime('%Y%m%dT%H%M%S', time.gmtime(now()))}.jsonl"
        write_training_feedback(records, feedback_path)
    progress(
        f"retraining {s.retrain_family} on {champion.data} ({champion.scheme}, limit {champion.limit}) "
        f"with {len(records)} feedback records, as champion v{champion.version} was"
    )
    result = train(s.retrain_family, champion.data, champion.scheme, s, limit=champion.limit, feedback=feedback_path, progress=progress)
    version = str(result.version)
    tags = {"retrain_reasons": "; ".join(decision.reasons) or "manual", "retrain_feedback": str(len(records)), "retrain_since": _iso(since)}
    registry.tag_version(version, tags)
    registry_ops.promote(registry, version, alias=CHALLENGER, metric=s.promote_metric, tolerance=s.promote_accuracy_tolerance)
    progress(f"v{version} is the challenger")

    candidate = registry_ops.summary(registry, version)
    incumbent = registry_ops.summary(registry, champion.version)
    comparison = {m: (candidate.metrics.get(m), incumbent.metrics.get(m)) for m in COMPARED}
    for metric, (mine, theirs) in comparison.items():
        progress(f"  {metric:<24} v{version} {_num(mine)}   champion v{champion.version} {_num(theirs)}")
    try:
        registry_ops.promote(registry, version, metric=s.promote_metric, tolerance=s.promote_accuracy_tolerance)
    except registry_ops.PromotionRefused as refused:
        progress(f"v{version} stays the challenger: {'; '.join(refused.reasons)}")
        return RetrainResult(decision, champion, version, False, tuple(refused.reasons), comparison)
    progress(f"v{version} passed the gate and is now the champion (was v{champion.version}); workers swap within BADBUZZ_MODEL_POLL_S")
    return RetrainResult(decision, champion, version, True, (), comparison)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
