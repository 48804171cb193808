"""The Faust agent: takes micro-batches of raw events off ``tweets.raw`` and hands them to
the pipeline. Offsets are acknowledged only after a batch is fully counted (at-least-once;
the counters make redelivery harmless)."""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

import faust
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from config.settings import Settings
from stream.heap import freeze_long_lived_objects
from stream.metrics import Metrics
from stream.pipeline import Pipeline, RawMessage
from counting.terms import ScopeMatcher

log = logging.getLogger(__name__)

DLQ_TRUNCATED_BYTES = 512 * 1024


def scopes_for(settings: Settings) -> list[str]:
    return ScopeMatcher(settings.watch_terms).scopes


def to_raw_message(event) -> RawMessage:
    message = event.message
    return RawMessage(
        value=message.value,
        key=message.key,
        timestamp_ms=int(message.timestamp * 1000) if message.timestamp else None,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
    )


def dead_letter_to(dlq: faust.TopicT, metrics: Metrics):
    async def dead_letter(message: RawMessage, reason: str) -> None:
        log.warning("dead-lettered %s[%d]@%d: %s", message.topic, message.partition, message.offset, reason)
        metrics.record_dead_letter(reason)
        headers = {
            "dlq.reason": reason.encode(),
            "dlq.topic": message.topic.encode(),
            "dlq.partition": str(message.partition).encode(),
            "dlq.offset": str(message.offset).encode(),
        }
        # Await delivery: the source offset is committed after this batch, so the original
        # bytes must be safe in the DLQ first.
        value = message.value or b""
        try:
            await (await dlq.send(key=message.key, value=value, headers=headers))
        except Exception as exc:
            if "MessageSizeTooLarge" not in repr(exc):
                raise
            # The original plus our headers exceeds the broker's limit: keep the reason
            # and as much of the original as fits, and say so.
            headers["dlq.truncated"] = b"true"
            headers["dlq.original_size"] = str(len(value)).encode()
            await (await dlq.send(key=message.key, value=value[:DLQ_TRUNCATED_BYTES], headers=headers))

    return dead_letter


def register(app: faust.App, settings: Settings, raw: faust.TopicT, build_pipeline: Callable[[], Pipeline], metrics: Metrics) -> None:
    @app.agent(raw, name="score-and-count")
    async def score_and_count(stream):
        pipeline = build_pipeline()
        await pipeline.start()
        freeze_long_lived_objects()
        async for events in stream.take_events(settings.batch_size, within=settings.batch_within_s):
            messages = [to_raw_message(e) for e in events]
            started = time.perf_counter()
            result = await process_until_done(pipeline, messages, metrics)
            metrics.record_batch(messages, result, duration_s=time.perf_counter() - started)
            log.debug("batch %s", result)


async def process_until_done(pipeline: Pipeline, messages: list[RawMessage], metrics: Metrics):
    """Retry a batch while Redis is unreachable: skipping it would lose the posts, and
    the offsets stay uncommitted until it is counted. Counting is idempotent, so a batch
    that failed half-way is simply counted again."""
    delay = 0.5
    while True:
        try:
            return await pipeline.process(messages)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            metrics.redis_errors.labels("count").inc()
            log.error("Redis unavailable (%s); retrying batch of %d in %.1fs", exc, len(messages), delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
