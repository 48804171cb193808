"""Shadow scoring: while the ``challenger`` alias is set, a share of the posts is scored by
it too, off the critical path, and the two models are compared.

Which posts: those whose id hashes below ``BADBUZZ_SHADOW_FRACTION`` (deterministic, so
every worker and every redelivery picks the same ones). The pipeline hands each counted
batch to ``ShadowScorer.observe``, which only queues the picked posts on a bounded queue;
a background task scores them with the challenger on a thread of its own. When the queue
is full the work is dropped and counted, never waited for: the champion's path does not
slow down because a challenger is slow.

Recorded per (champion version, challenger version): posts compared, agreements (same
label), the sum of absolute score differences, each side's negatives, and each side's
scoring time per post (the champion's amortised over its whole batch). As Prometheus
metrics on the worker, and as hourly aggregates in Redis that ``badbuzz compare`` and
``badbuzz report`` read.

Key layout (``P`` is the Redis prefix as a hash tag, ``{prefix}``, so on Redis Cluster all of it shares one slot):
``P:shadow:<hour>:<champion>|<challenger>`` (a hash
of the sums, hour = wall-clock hours since the epoch), ``P:shadow:index`` (those keys'
suffixes scored by hour)."""
from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields

import numpy as np
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from redis.exceptions import RedisError

from config.connections import shared_keyspace, transaction
from models.scorer import ModelInfo, Scorer
from stream.pipeline import ScoredBatch

log = logging.getLogger(__name__)

HOUR_S = 3600
RETENTION_S = 35 * 24 * 3600
_HASH_SPACE = float(2**64)
_PER_POST_SECONDS = (0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)


def in_sample(post_id: str, fraction: float) -> bool:
    """Whether ``post_id`` is among the ``fraction`` of ids picked for shadow scoring."""
    if fraction <= 0:
        return False
    if fraction >= 1:
        return True
    digest = hashlib.blake2b(post_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < fraction * _HASH_SPACE


@dataclass(frozen=True)
class PairTotals:
    """Sums over the posts both models scored; the figures are derived from them."""

    posts: int = 0
    agreed: int = 0
    abs_delta: float = 0.0
    champion_negative: int = 0
    challenger_negative: int = 0
    champion_s: float = 0.0
    challenger_s: float = 0.0

    def __add__(self, other: PairTotals) -> PairTotals:
        return PairTotals(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    @property
    def agreement(self) -> float | None:
        return self.agreed / self.posts if self.posts else None

    @property
    def mean_abs_delta(self) -> float | None:
        return self.abs_delta / self.posts if self.posts else None

    @property
    def champion_negative_rate(self) -> float | None:
        return self.champion_negative / self.posts if self.posts else None

    @property
    def challenger_negative_rate(self) -> float | None:
        return self.challenger_negative / self.posts if self.posts else None

    @property
    def champion_ms_per_post(self) -> float | None:
        return self.champion_s * 1000 / self.posts if self.posts else None

    @property
    def challenger_ms_per_post(self) -> float | None:
        return self.challenger_s * 1000 / self.posts if self.posts else None

    def as_dict(self) -> dict:
        return {
            "posts": self.posts,
            "agreement": self.agreement,
            "mean_abs_delta": self.mean_abs_delta,
            "champion_negative_rate": self.champion_negative_rate,
            "challenger_negative_rate": self.challenger_negative_rate,
            "champion_ms_per_post": self.champion_ms_per_post,
            "challenger_ms_per_post": self.challenger_ms_per_post,
        }


def compare(
    champion: Sequence[float], challenger: Sequence[float], champion_threshold: float, challenger_threshold: float,
    *, champion_s: float = 0.0, challenger_s: float = 0.0,
) -> PairTotals:
    """Totals for posts scored by both (same order); each model labels with its own threshold."""
    a = np.asarray(champion, dtype=np.float64)
    b = np.asarray(challenger, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"{a.size} champion scores for {b.size} challenger scores")
    neg_a, neg_b = a >= champion_threshold, b >= challenger_threshold
    return PairTotals(
        posts=int(a.size),
        agreed=int(np.sum(neg_a == neg_b)),
        abs_delta=float(np.sum(np.abs(a - b))),
        champion_negative=int(neg_a.sum()),
        challenger_negative=int(neg_b.sum()),
        champion_s=champion_s,
        challenger_s=challenger_s,
    )


class ShadowStore:
    def __init__(self, redis: aioredis.Redis, *, prefix: str, retention_s: int = RETENTION_S):
        self.redis = redis
        self.prefix = shared_keyspace(prefix)
        self.retention_s = retention_s

    @property
    def index_key(self) -> str:
        return f"{self.prefix}:shadow:index"

    def key(self, member: str) -> str:
        return f"{self.prefix}:shadow:{member}"

    async def add(self, hour: int, champion: str, challenger: str, totals: PairTotals) -> None:
        member = f"{hour}:{champion}|{challenger}"
        key = self.key(member)
        pipe = await transaction(self.redis)
        for name in ("posts", "agreed", "champion_negative", "challenger_negative"):
            pipe.hincrby(key, name, getattr(totals, name))
        for name in ("abs_delta", "champion_s", "challenger_s"):
            pipe.hincrbyfloat(key, name, getattr(totals, name))
        pipe.expire(key, self.retention_s)
        pipe.zadd(self.index_key, {member: hour})
        pipe.zremrangebyscore(self.index_key, "-inf", hour - self.retention_s // HOUR_S)
        pipe.expire(self.index_key, self.retention_s)
        await pipe.execute()

    async def totals(self, since_hour: int, until_hour: int) -> dict[tuple[str, str], PairTotals]:
        """Per (champion, challenger) version pair, the sums over the hours in [since, until]."""
        members = [m.decode() for m in await self.redis.zrangebyscore(self.index_key, since_hour, until_hour)]
        if not members:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        for member in members:
            pipe.hgetall(self.key(member))
        out: dict[tuple[str, str], PairTotals] = {}
        for member, raw in zip(members, await pipe.execute()):
            if not raw:
                continue  # expired since the index was read
            pair = tuple(member.split(":", 1)[1].split("|", 1))
            values = {k.decode(): v.decode() for k, v in raw.items()}
            totals = PairTotals(
                posts=int(values.get("posts", 0)),
                agreed=int(values.get("agreed", 0)),
                abs_delta=float(values.get("abs_delta", 0)),
                champion_negative=int(values.get("champion_negative", 0)),
                challenger_negative=int(values.get("challenger_negative", 0)),
                champion_s=float(values.get("champion_s", 0)),
                challenger_s=float(values.get("challenger_s", 0)),
            )
            out[pair] = out.get(pair, PairTotals()) + totals
        return out


@dataclass(frozen=True)
class ShadowJob:
    ids: list[str]
    clean: list[str]
    scores: np.ndarray
    champion: ModelInfo
    champion_s: float  # the champion's scoring time for these posts (amortised)


class ShadowScorer:
    """The pipeline observer and the background task that scores picked posts with the challenger."""

    def __init__(
        self,
        fraction: float,
        *,
        queue_batches: int,
        store: ShadowStore | None,
        metrics_registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.fraction = fraction
        self.store = store
        self.clock = clock
        self.challenger: Scorer | None = None
        self.queue: asyncio.Queue[ShadowJob] = asyncio.Queue(maxsize=queue_batches)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shadow")
        r = metrics_registry
        self.posts = Counter("badbuzz_shadow_posts", "Posts picked for shadow scoring, by outcome", ["outcome"], registry=r)
        for outcome in ("scored", "dropped", "failed"):
            self.posts.labels(outcome)
        self.agreed = Counter("badbuzz_shadow_agreements", "Shadow-scored posts the challenger labelled as the champion did", registry=r)
        self.abs_delta = Counter("badbuzz_shadow_abs_score_delta", "Sum of |champion score - challenger score| over shadow-scored posts", registry=r)
        self.latency = Histogram(
            "badbuzz_model_post_scoring_seconds", "Model time per post (amortised over its batch), by role and version",
            ["role", "version"], buckets=_PER_POST_SECONDS, registry=r,
        )
        self.depth = Gauge("badbuzz_shadow_queue_batches", "Batches waiting for the challenger", registry=r)
        self.depth.set_function(self.queue.qsize)

    def set_challenger(self, scorer: Scorer | None) -> None:
        self.challenger = scorer

    def observe(self, batch: ScoredBatch) -> None:
        """On the batch path: pick and queue, nothing else."""
        n = len(batch.ids)
        if n == 0:
            return
        per_post = batch.scoring_s / n
        self.latency.labels("champion", batch.model.version_label).observe(per_post)
        challenger = self.challenger
        if challenger is None or challenger.info.version_label == batch.model.version_label:
            return
        picked = [i for i, post_id in enumerate(batch.ids) if in_sample(post_id, self.fraction)]
        if not picked:
            return
        job = ShadowJob(
            [batch.ids[i] for i in picked],
            [batch.clean[i] for i in picked],
            np.asarray(batch.scores, dtype=np.float64)[picked],
            batch.model,
            per_post * len(picked),
        )
        try:
            self.queue.put_nowait(job)
        except asyncio.QueueFull:
            self.posts.labels("dropped").inc(len(picked))

    async def run(self) -> None:
        while True:
            job = await self.queue.get()
            try:
                await self.score(job)
            finally:
                self.queue.task_done()

    async def score(self, job: ShadowJob) -> PairTotals | None:
        challenger = self.challenger
        if challenger is None:
            self.posts.labels("dropped").inc(len(job.ids))
            return None
        started = time.perf_counter()
        try:
            scores = await asyncio.get_running_loop().run_in_executor(self._executor, challenger.score_clean, job.clean)
        except Exception as exc:  # a broken challenger must not take the worker down
            self.posts.labels("failed").inc(len(job.ids))
            log.warning("challenger %s failed on %d posts: %s", challenger.info.display, len(job.ids), exc)
            return None
        elapsed = time.perf_counter() - started
        totals = compare(job.scores, scores, job.champion.threshold, challenger.info.threshold, champion_s=job.champion_s, challenger_s=elapsed)
        self.posts.labels("scored").inc(totals.posts)
        self.agreed.inc(totals.agreed)
        self.abs_delta.inc(totals.abs_delta)
        self.latency.labels("challenger", challenger.info.version_label).observe(elapsed / max(totals.posts, 1))
        if self.store is not None:
            try:
                await self.store.add(int(self.clock()) // HOUR_S, job.champion.version_label, challenger.info.version_label, totals)
            except (RedisError, OSError) as exc:
                log.warning("shadow comparison of %d posts not stored, Redis unavailable: %s", totals.posts, exc)
        return totals
