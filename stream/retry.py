"""Which failures are worth waiting out, and how the worker waits them out.

A transient failure is a server state that ends by itself: Redis unreachable, out of
memory, refusing writes (MISCONF, READONLY), busy with a script, loading its data set,
a cluster resharding, a script cache flushed, a Kafka broker away. Waiting and trying
again is the only way not to lose the work. Anything else is a bug (ours or the data's):
retrying it would spin forever, so each path decides what a bug costs it."""
from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError
from faust.exceptions import ProducerSendError
from redis import exceptions as redis_errors

T = TypeVar("T")

# The label of a failure that is not transient.
UNEXPECTED = "unexpected"
TRANSIENT_CLASSES = (
    "connection", "timeout", "oom", "misconf", "readonly", "busy", "loading", "tryagain", "clusterdown", "noscript", "kafka",
)
ERROR_CLASSES = (*TRANSIENT_CLASSES, UNEXPECTED)

# redis-py gives these replies their own exception classes (and strips the code from the
# message); the rest arrive as a plain ResponseError whose message starts with the code.
_REDIS_CLASSES: tuple[tuple[type[BaseException], str], ...] = (
    (redis_errors.BusyLoadingError, "loading"),
    (redis_errors.ConnectionError, "connection"),
    (redis_errors.TimeoutError, "timeout"),
    (redis_errors.OutOfMemoryError, "oom"),
    (redis_errors.ReadOnlyError, "readonly"),
    (redis_errors.NoScriptError, "noscript"),
    (redis_errors.TryAgainError, "tryagain"),
    (redis_errors.ClusterDownError, "clusterdown"),
    # The cluster client follows these itself; one that outlives its redirects is a
    # resharding or failover still in progress.
    (redis_errors.MovedError, "tryagain"),
    (redis_errors.AskError, "tryagain"),
)
_REPLY_CODES = {
    "OOM": "oom", "MISCONF": "misconf", "READONLY": "readonly", "BUSY": "busy", "LOADING": "loading",
    "TRYAGAIN": "tryagain", "CLUSTERDOWN": "clusterdown", "MASTERDOWN": "clusterdown", "NOSCRIPT": "noscript",
}
# A reply's code opens its message, or follows redis-py's note on which command of a
# pipeline failed ("... of pipeline caused error: ('MISCONF ...',)").
_REPLY_CODE = re.compile(r"(?:^|of pipeline caused error: \(?['\"]?)([A-Z]+)\b")


def error_class(exc: BaseException) -> str:
    """One of ``TRANSIENT_CLASSES``, or ``UNEXPECTED``."""
    for cls, name in _REDIS_CLASSES:
        if isinstance(exc, cls):
            return name
    if isinstance(exc, redis_errors.ResponseError):
        match = _REPLY_CODE.search(str(exc))
        return _REPLY_CODES.get(match.group(1), UNEXPECTED) if match else UNEXPECTED
    if isinstance(exc, ProducerSendError) and isinstance(exc.__cause__, KafkaError):
        exc = exc.__cause__
    if isinstance(exc, (KafkaConnectionError, KafkaTimeoutError)) or (isinstance(exc, KafkaError) and exc.retriable):
        return "kafka"
    if isinstance(exc, OSError):
        return "connection"
    return UNEXPECTED


def is_transient(exc: BaseException) -> bool:
    return error_class(exc) != UNEXPECTED


class Outage:
    """One log line when a run of failures starts and one when it ends, with how many
    retries it took: a Redis outage of ten minutes is two lines, not three hundred."""

    def __init__(self, log: logging.Logger, what: str, *, clock: Callable[[], float] = time.monotonic):
        self.log = log
        self.what = what
        self.clock = clock
        self.retries = 0
        self._since: float | None = None

    @property
    def ongoing(self) -> bool:
        return self._since is not None

    def failed(self, exc: BaseException) -> None:
        if self._since is None:
            self._since = self.clock()
            self.log.error("%s failing (%s: %s); retrying with backoff until it recovers", self.what, error_class(exc), exc)
        self.retries += 1

    def recovered(self) -> None:
        if self._since is None:
            return
        self.log.warning("%s recovered after %d retries in %.1fs", self.what, self.retries, self.clock() - self._since)
        self._since, self.retries = None, 0


class Backoff:
    """Delays that double from ``first_s`` up to ``max_s``."""

    def __init__(self, first_s: float = 0.5, max_s: float = 10.0):
        self.first_s = first_s
        self.max_s = max_s
        self._next = first_s

    def next(self) -> float:
        delay, self._next = self._next, min(self._next * 2, self.max_s)
        return delay


class Abandoned(Exception):
    """The worker is stopping: the step was given up before it was done."""


async def until_done(
    step: Callable[[], Awaitable[T]],
    *,
    stopped: asyncio.Future,
    outage: Outage,
    on_retry: Callable[[str], None],
    stop_wait_s: float,
    backoff: Backoff | None = None,
) -> T:
    """Run ``step`` until it succeeds, retrying transient failures with backoff; any
    other failure is raised at once. Once ``stopped`` is done there are no more retries,
    and an attempt still running gets ``stop_wait_s`` to finish before it is cancelled:
    both raise ``Abandoned``."""
    backoff = backoff or Backoff()
    while True:
        attempt = asyncio.ensure_future(step())
        try:
            await asyncio.wait({attempt, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not attempt.done():
                await asyncio.wait({attempt}, timeout=stop_wait_s)
            if not attempt.done():
                raise Abandoned()
            if attempt.exception() is None:
                outage.recovered()
                return attempt.result()
            exc = attempt.exception()
            if not is_transient(exc):
                raise exc
        finally:
            if not attempt.done():
                attempt.cancel()
                await asyncio.gather(attempt, return_exceptions=True)
        on_retry(error_class(exc))
        outage.failed(exc)
        if stopped.done():
            raise Abandoned() from exc
        await asyncio.wait({stopped}, timeout=backoff.next())
