"""What happens to one batch of raw messages: decode, score, count, escalate.

Free of Kafka: the agent hands in ``RawMessage``s and a dead-letter callable, so this
runs the same under Faust, in tests and in benchmarks."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from alerting.escalation import Escalator
from config.settings import Settings
from counting.counters import Counters, PartitionBatch, ScoredPost, ShownPost
from counting.terms import ScopeMatcher, driver_terms
from counting.windows import minute_of
from models.preprocess import mask, preprocess
from models.scorer import ModelInfo, Scorer
from stream.messages import InvalidMessage, Tweet, decode, late_reason
from stream.model_watch import ActiveModel

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RawMessage:
    value: bytes | None
    key: bytes | None = None
    timestamp_ms: int | None = None
    topic: str = ""
    partition: int = -1
    offset: int = -1


DeadLetter = Callable[[RawMessage, str], Awaitable[None]]

# Longest a batch may score on the event loop (see Pipeline._score): a pause of this
# length delays no heartbeat (those run on the consumer thread) and no scrape noticeably.
INLINE_SCORING_S = 0.05


def _score_timed(scorer: Scorer, clean: list[str]) -> tuple[Sequence[float], float]:
    """Scores and the CPU seconds of the scoring thread: what the model costs, without the
    waits of a busy process."""
    started = time.thread_time()
    scores = scorer.score_clean(clean)
    return scores, time.thread_time() - started


@dataclass
class BatchResult:
    received: int = 0
    counted: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    # Event times of the valid posts and the model's time, for the metrics.
    event_ms: list[int] = field(default_factory=list)
    scoring_s: float = 0.0


@dataclass(frozen=True, slots=True)
class ScoredBatch:
    """What the model said about the posts of a batch counted for the first time, for
    observers that hand work off the critical path (shadow scoring, drift): they must
    return at once. A redelivered post is not in it again, so their statistics stay
    once per post, as the counters do."""

    ids: list[str]
    clean: list[str]
    scores: Sequence[float]
    model: ModelInfo
    # These posts' share of the batch's scoring seconds.
    scoring_s: float


BatchObserver = Callable[[ScoredBatch], None]


@dataclass(frozen=True)
class PipelineConfig:
    """The settings a batch needs: what to watch, and which messages to accept."""

    watch_terms: tuple[str, ...]
    max_text_chars: int
    future_tolerance_s: int
    counter_ttl_s: int
    allowed_lateness_s: int

    @classmethod
    def from_settings(cls, settings: Settings) -> PipelineConfig:
        return cls(
            watch_terms=tuple(settings.watch_terms),
            max_text_chars=settings.max_text_chars,
            future_tolerance_s=settings.future_tolerance_s,
            counter_ttl_s=settings.counter_ttl_s,
            allowed_lateness_s=settings.allowed_lateness_s,
        )


@dataclass(frozen=True, slots=True)
class _Scored:
    scorer: Scorer
    clean: list[str]
    scores: Sequence[float]
    posts: list[ScoredPost]


@dataclass
class Batch:
    """A batch on its way through the pipeline, remembering the steps it is through. A
    failed step (Redis refusing a write, a dead letter not delivered) is retried by
    running the batch again, which resumes at that step: a message is dead-lettered
    once, and a batch counted before its escalation failed is still escalated (counting
    it again would find every post already counted and skip escalation)."""

    messages: Sequence[RawMessage]
    result: BatchResult = field(init=False)
    # Messages before this one are accepted or dead-lettered.
    next_message: int = 0
    accepted: list[Tweet] = field(default_factory=list)
    # The message each accepted tweet came in.
    sources: list[RawMessage] = field(default_factory=list)
    scored: _Scored | None = None
    # Per partition, the positions (in ``accepted``) of the posts counted for the first
    # time; a partition is in it once its group is counted (one script per partition).
    fresh_by_partition: dict[int, list[int]] = field(default_factory=dict)
    # Positions of the posts counted for the first time; None until every partition is.
    fresh: list[int] | None = None
    escalated: bool = False

    def __post_init__(self) -> None:
        self.result = BatchResult(received=len(self.messages))

    @property
    def counted(self) -> bool:
        """Every post of the batch is counted (or the batch had none to count)."""
        return self.next_message == len(self.messages) and (self.fresh is not None or not self.accepted)


class Pipeline:
    def __init__(
        self,
        cfg: PipelineConfig,
        scorer: Scorer | ActiveModel,
        counters: Counters,
        escalator: Escalator,
        dead_letter: DeadLetter,
        observers: Sequence[BatchObserver] = (),
        *,
        matcher: Callable[[], ScopeMatcher] | None = None,
    ):
        self.cfg = cfg
        # Hot swaps (stream.model_watch) are adopted between batches, never within one.
        self.model = scorer if isinstance(scorer, ActiveModel) else ActiveModel(scorer)
        self.observers = list(observers)
        self.counters = counters
        self.escalator = escalator
        self.dead_letter = dead_letter
        # The watch terms the console edits reach a running worker as a new matcher
        # (alerting.watch_terms); a batch matches all its posts with one of them.
        if matcher is None:
            fixed = ScopeMatcher(cfg.watch_terms)
            matcher = lambda: fixed  # noqa: E731 - one matcher for the pipeline's life
        self._matcher = matcher
        self._watermark_ms = 0
        # The active model and its recent scoring seconds per post (moving average).
        self._cost_per_post: tuple[Scorer, float] | None = None

    @property
    def matcher(self) -> ScopeMatcher:
        return self._matcher()

    @property
    def scorer(self) -> Scorer:
        return self.model.current

    async def start(self) -> None:
        self._watermark_ms = await self.counters.watermark_ms()

    async def process(self, messages: Sequence[RawMessage]) -> BatchResult:
        return await self.run(Batch(messages))

    async def run(self, batch: Batch) -> BatchResult:
        """Take ``batch`` through the steps it has not been through yet (all of them the
        first time): what a retry after a failed step calls."""
        result = batch.result
        tweets = await self._accept(batch)
        if tweets and batch.scored is None:
            clean = [preprocess(t.text) for t in tweets]
            scorer = self.model.for_batch()
            scores, result.scoring_s = await self._score(scorer, clean)
            threshold = scorer.info.threshold
            posts = [
                ScoredPost(
                    id=tweet.id,
                    event_ms=tweet.event_ms,
                    score=float(score),
                    negative=bool(score >= threshold),
                    scopes=self.matcher.match(text),
                    terms=driver_terms(text) if score >= threshold else (),
                    offset=source.offset,
                )
                for tweet, source, text, score in zip(tweets, batch.sources, clean, scores)
            ]
            batch.scored = _Scored(scorer, clean, scores, posts)
        if batch.fresh is None and (tweets or any(m.offset >= 0 for m in batch.messages)):
            await self._count(batch)
            batch.fresh = sorted(i for positions in batch.fresh_by_partition.values() for i in positions)
        if tweets and not result.event_ms:
            scored = batch.scored
            fresh = batch.fresh
            result.counted = len(fresh)
            if self.observers and fresh:
                observed = ScoredBatch(
                    [tweets[i].id for i in fresh], [scored.clean[i] for i in fresh], [scored.scores[i] for i in fresh], scored.scorer.info,
                    result.scoring_s * len(fresh) / len(tweets),
                )
                for observe in self.observers:
                    # The batch is counted: a failing side job (shadow, drift) must not fail it.
                    try:
                        observe(observed)
                    except Exception:
                        log.exception("batch observer %r failed", observe)
            result.event_ms = [t.event_ms for t in tweets]
            result.duplicates = len(scored.posts) - result.counted
            self._watermark_ms = max(self._watermark_ms, max(t.event_ms for t in tweets))
        if result.counted and not batch.escalated:
            touched = {scope for post in batch.scored.posts for scope in post.scopes}
            # At the shared watermark: a worker behind the others must not decide on an
            # older minute. The incident store reports each alert it queues (metrics, logs).
            shared_ms = max(self._watermark_ms, await self.counters.watermark_ms())
            await self.escalator.evaluate(minute_of(shared_ms), touched, since=minute_of(min(post.event_ms for post in batch.scored.posts)))
            batch.escalated = True
        return result

    async def _count(self, batch: Batch) -> None:
        """Count the batch one partition at a time (each partition's counters and offset
        live in their own Redis slot), resuming after the partitions already counted."""
        scored = batch.scored
        version = scored.scorer.info.version_label if scored else ""
        # Partitions whose messages were all dead-lettered are "counted" too: their offset
        # moves on, so a worker resuming there does not dead-letter them again.
        groups: dict[int, list[int]] = {max(m.partition, 0): [] for m in batch.messages}
        for position, source in enumerate(batch.sources):
            groups[max(source.partition, 0)].append(position)
        parts, positions_of = [], {}
        for partition, positions in sorted(groups.items()):
            if partition in batch.fresh_by_partition:
                continue
            messages = [m for m in batch.messages if max(m.partition, 0) == partition]
            arrived = [m.timestamp_ms for m in messages if m.timestamp_ms is not None]
            tweets = [batch.accepted[i] for i in positions]
            parts.append(PartitionBatch(
                partition,
                [scored.posts[i] for i in positions],
                through_offset=max((m.offset for m in messages), default=-1),
                arrived_ms=max(arrived) if arrived else None,
                shown=lambda i, tweets=tweets: ShownPost(mask(tweets[i].text), tweets[i].url),
            ))
            positions_of[partition] = positions
        # All partitions in one call: one script run a Redis slot, not one a partition.
        for partition, fresh in (await self.counters.count_batch(parts, model_version=version)).items():
            batch.fresh_by_partition[partition] = [positions_of[partition][i] for i in fresh]

    async def _score(self, scorer: Scorer, clean: list[str]) -> tuple[Sequence[float], float]:
        """Scores and seconds taken. A batch the model is expected to score within
        ``INLINE_SCORING_S`` is scored on the event loop: handing it to a thread and back
        cost the TF-IDF worker a sixth of its throughput. Longer ones (a transformer's
        batch, a model not yet timed) go off the loop, so Faust's timers and the web server
        keep running while they score."""
        known = self._cost_per_post if self._cost_per_post and self._cost_per_post[0] is scorer else None
        started = time.perf_counter()
        if known is not None and known[1] * len(clean) <= INLINE_SCORING_S:
            scores, cpu_s = _score_timed(scorer, clean)
        else:
            scores, cpu_s = await asyncio.get_running_loop().run_in_executor(None, _score_timed, scorer, clean)
        per_post = cpu_s / len(clean)
        self._cost_per_post = (scorer, per_post if known is None else 0.8 * known[1] + 0.2 * per_post)
        return scores, time.perf_counter() - started

    async def _accept(self, batch: Batch) -> list[Tweet]:
        s = self.cfg
        now_ms = int(time.time() * 1000)
        while batch.next_message < len(batch.messages):
            message = batch.messages[batch.next_message]
            try:
                tweet = decode(
                    message.value,
                    kafka_timestamp_ms=message.timestamp_ms,
                    now_ms=now_ms,
                    max_text_chars=s.max_text_chars,
                    future_tolerance_ms=s.future_tolerance_s * 1000,
                    retention_ms=s.counter_ttl_s * 1000,
                )
                reason = late_reason(tweet.event_ms, self._watermark_ms, s.allowed_lateness_s * 1000)
            except InvalidMessage as exc:
                reason = str(exc)
            if reason is None:
                batch.accepted.append(tweet)
                batch.sources.append(message)
            else:
                await self.dead_letter(message, reason)
                batch.result.dead_lettered += 1
            batch.next_message += 1
        return batch.accepted
