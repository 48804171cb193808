"""The Faust agent: takes micro-batches of raw events off ``tweets.raw`` and hands them to
the pipeline. Offsets are acknowledged only after a batch is fully handled (at-least-once;
the counters make redelivery harmless), never for a batch that was not counted."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import faust
from faust.types import EventT
from faust.types.tuples import ack_lock

from config.settings import Settings
from counting.counters import CountsLost
from stream.heap import freeze_long_lived_objects
from stream.metrics import Metrics
from stream.pipeline import Batch, BatchResult, Pipeline, RawMessage
from stream.retry import Abandoned, Outage, until_done

log = logging.getLogger(__name__)

T = TypeVar("T")

DLQ_TRUNCATED_BYTES = 512 * 1024
# How long a batch in hand when the worker begins to stop may take to finish; the
# shutdown waits for it (Faust waits for every taken event) within its grace period.
STOP_WAIT_S = 5.0


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


def hold(events: Sequence[EventT]) -> None:
    """Keep Faust from acknowledging these events, so their offsets are never committed
    by this worker and whoever owns the partitions next reads them again. Faust
    acknowledges the events ``take_events`` yielded in a ``finally`` block, whatever
    became of them, and waits for every unacknowledged one before it stops: a message
    already marked acknowledged is skipped by the one and released by the other. Only
    for a worker about to stop: an offset acknowledged after a held one could be
    committed past it."""
    with ack_lock:
        for event in events:
            event.message.acked = True


class BatchHandler:
    """Takes each batch through the pipeline until it is fully handled, so that its
    offsets are committed only then. A transient failure (see ``stream.retry``) is
    retried with backoff for as long as it lasts. Anything else is a bug: the batch is
    held and the worker stops, to start again from the last committed offset, rather
    than acknowledge posts it never counted. When the worker is stopping, the batch in
    hand gets ``stop_wait_s`` to finish; if it was not counted by then it is held, and
    so is every batch after it."""

    def __init__(
        self,
        pipeline: Pipeline,
        metrics: Metrics,
        *,
        stopped: asyncio.Future,
        crash: Callable[[BaseException], Awaitable[None]],
        stop_wait_s: float = STOP_WAIT_S,
        before_batches: Sequence[Callable[[], Awaitable[object]]] = (),
    ):
        self.pipeline = pipeline
        self.before_batches = list(before_batches)
        self.metrics = metrics
        self.stopped = stopped
        self.crash = crash
        self.stop_wait_s = stop_wait_s
        self.outage = Outage(log, "batch processing")
        self.halted = False

    def _retried(self, error: str) -> None:
        self.metrics.batch_retries.labels(error).inc()
        if error != "kafka":
            self.metrics.redis_errors.labels("count").inc()

    async def _until_done(self, step: Callable[[], Awaitable[T]]) -> T:
        return await until_done(step, stopped=self.stopped, outage=self.outage, on_retry=self._retried, stop_wait_s=self.stop_wait_s)

    async def start(self) -> None:
        await self._until_done(self.pipeline.start)
        for step in self.before_batches:
            await self._until_done(step)

    async def handle(self, events: Sequence[EventT]) -> BatchResult | None:
        """The batch's result once it is counted; None when it was held."""
        if self.halted or self.stopped.done():
            self._hold(events)
            return None
        batch = Batch([to_raw_message(e) for e in events])
        started = time.perf_counter()
        try:
            result = await self._until_done(lambda: self.pipeline.run(batch))
        except Abandoned:
            if not batch.counted:
                self._hold(events)
                return None
            result = batch.result
        except asyncio.CancelledError:
            # Not by the stop above (that ends in Abandoned): whoever cancels, the posts
            # stay unacknowledged, and a worker that goes on would commit past them.
            if not batch.counted:
                self._hold(events)
                if not self.stopped.done():
                    log.critical("batch of %d cancelled before it was counted; stopping the worker without committing it", len(events))
                    asyncio.ensure_future(self.crash(RuntimeError("a batch was cancelled before it was counted")))
            raise
        except CountsLost as exc:
            # Only a restart reads the forgotten messages again: on assignment the worker
            # resumes where Redis's counts end (stream.assignment).
            self._hold(events)
            log.critical("%s; stopping the worker so that it resumes at Redis's offset", exc)
            await self.crash(exc)
            return None
        except Exception as exc:
            self._hold(events)
            log.critical(
                "batch of %d failed on an unexpected error; stopping the worker without committing it", len(events), exc_info=exc
            )
            await self.crash(exc)
            return None
        self.metrics.record_batch(batch.messages, result, duration_s=time.perf_counter() - started)
        log.debug("batch %s", result)
        return result

    def _hold(self, events: Sequence[EventT]) -> None:
        hold(events)
        self.halted = True


def register(
    app: faust.App, settings: Settings, raw: faust.TopicT, build_pipeline: Callable[[], Pipeline], metrics: Metrics,
    *, load_watch_terms: Callable[[], Awaitable[object]],
) -> None:
    """``load_watch_terms``: read the terms the console saved, so the first batch is
    matched with them rather than with the settings' ones."""

    @app.agent(raw, name="score-and-count")
    async def score_and_count(stream):
        handler = BatchHandler(build_pipeline(), metrics, stopped=until_stopped(app), crash=app.crash, before_batches=[load_watch_terms])
        try:
            await handler.start()
        except Abandoned:
            return
        freeze_long_lived_objects()
        async for events in stream.take_events(settings.batch_size, within=settings.batch_within_s):
            await handler.handle(events)


def until_stopped(app: faust.App) -> asyncio.Future:
    """Done once the app begins to stop (a signal, or a crash)."""
    return asyncio.ensure_future(app.wait())
