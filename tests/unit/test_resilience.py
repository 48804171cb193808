"""No input or arithmetic edge crashes a worker, and no batch is acknowledged before it
is counted: degenerate counts, absurd timestamps, Redis refusing writes, bugs and stops
in the middle of a batch. No services: the batch handler runs on fakes."""
from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from datetime import UTC, datetime
from types import SimpleNamespace

import orjson
import pytest
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError
from faust.exceptions import ProducerSendError
from hypothesis import given
from hypothesis import strategies as st
from redis import exceptions as redis_errors
from test_model_watch import NoEscalation, RecordingCounters, Scorer

from alerting.alert import iso
from alerting.drivers import MIN_Z, over_represented
from alerting.feedback import MAX_SUBMITTED_AT_MS, InvalidFeedback, parse_feedback
from alerting.rules import Baseline, Episode, Observation, Severity, Signal, decide, decide_model_quality
from config.settings import Settings
from counting.windows import WindowStats
from stream.agents import BatchHandler
from stream.metrics import Metrics
from stream.model_watch import ActiveModel
from stream.pipeline import Pipeline, PipelineConfig
from stream.retry import ERROR_CLASSES, UNEXPECTED, Backoff, Outage, error_class
from tests.configs import rule_config

# --- drivers and the rule on degenerate counts -----------------------------------------


def test_a_one_term_storm_has_no_drivers_instead_of_dividing_by_zero():
    assert over_represented({"outage": 40}, {"outage": 3}, 5) == []
    assert over_represented({"outage": 40}, {"outage": 3, "late": 2}, 5)[0].term == "outage"
    assert [d.term for d in over_represented({"outage": 40}, {}, 5)] == ["outage"]


def test_empty_zero_and_negative_counts_are_no_drivers():
    assert over_represented({}, {}, 5) == []
    assert over_represented({"late": 0, "bags": -4}, {"late": 0}, 5) == []
    assert over_represented({"late": 5, "bags": 0}, {"bags": -2, "late": 5}, 5) == []
    assert over_represented({"refund": 9}, {"refund": 3}, 5, min_count=0) == []


terms = st.sampled_from(["late", "bags", "refund", "crew", "wifi", "@united", "<url>", ""])
counts = st.dictionaries(terms, st.integers(min_value=-5, max_value=10**12), max_size=6)


@given(counts, counts, st.integers(min_value=0, max_value=10), st.integers(min_value=-1, max_value=5))
def test_drivers_of_any_counts_are_finite_and_significant(window, reference, k, min_count):
    drivers = over_represented(window, reference, k, min_count=min_count)
    assert len(drivers) <= k
    for d in drivers:
        assert math.isfinite(d.z) and d.count >= max(min_count, 1) and d.count == window[d.term]
        # Unscored (z = 0) only with no reference to compare with.
        assert d.z >= MIN_Z or (d.z == 0.0 and not any(c > 0 and t and t[0] not in "@<" for t, c in reference.items()))


windows = st.builds(
    WindowStats,
    start_minute=st.just(0),
    end_minute=st.just(14),
    total=st.integers(min_value=0, max_value=10**9),
    negative=st.integers(min_value=0, max_value=10**9),
    score_sum=st.floats(min_value=0, max_value=1e9),
)
rates = st.one_of(st.none(), st.floats(min_value=0.0, max_value=1.0))
volumes = st.one_of(st.none(), st.floats(min_value=0.0, max_value=1e9))


@given(windows, windows, rates, volumes, st.sampled_from([Signal.NEGATIVE_RATE, Signal.VOLUME]), st.booleans())
def test_the_rule_decides_on_any_counts(short, long, rate, per_minute, signal, open_episode):
    baseline = Baseline(rate, per_minute, "trailing")
    episode = Episode(Severity.WARNING, baseline, 0) if open_episode else None
    decision = decide(signal, Observation(14, short, long, baseline), episode, rule_config())
    assert decision is None or decision.severity in Severity


@given(st.integers(min_value=0, max_value=10**9), st.integers(min_value=0, max_value=100))
def test_the_model_quality_rule_decides_on_any_count(wrong, threshold):
    decide_model_quality(wrong, None, 10, rule_config(model_wrong_threshold=threshold))


# --- timestamps from outside --------------------------------------------------------------

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def test_iso_of_times_beyond_the_calendar_is_its_nearest_end():
    assert iso(1_767_268_800_000) == "2026-01-01T12:00:00Z"
    assert iso(-1) == "1969-12-31T23:59:59Z"
    assert iso(10**30) == "9999-12-31T23:59:59Z"
    assert iso(-(10**30)) == "0001-01-01T00:00:00Z"
    assert iso(MAX_SUBMITTED_AT_MS) == "9999-12-31T23:59:59Z"


@given(st.integers(min_value=-(10**40), max_value=10**40))
def test_iso_of_any_integer(ms):
    text = iso(ms)
    assert ISO.match(text)
    if -62_135_596_800_000 <= ms <= MAX_SUBMITTED_AT_MS:
        expected = datetime.fromtimestamp(ms // 1000, tz=UTC).isoformat().replace("+00:00", "Z")
        assert text == expected


@pytest.mark.parametrize(
    "submitted, error",
    [
        (-1, "field 'submitted_at' is not a time between 1970 and 9999"),
        (MAX_SUBMITTED_AT_MS + 1, "field 'submitted_at' is not a time between 1970 and 9999"),
        (10**17, "field 'submitted_at' is not a time between 1970 and 9999"),
        # Beyond 64 bits, JSON's number is read as a float.
        (10**30, "field 'submitted_at' must be epoch milliseconds"),
    ],
)
def test_feedback_from_outside_the_calendar_is_refused(submitted, error):
    raw = b'{"post_id": "1", "label": "negative", "submitted_at": %d}' % submitted
    with pytest.raises(InvalidFeedback) as exc:
        parse_feedback(raw)
    assert str(exc.value) == error


# --- which failures are transient ----------------------------------------------------------


def pipeline_error(reply: str) -> redis_errors.ResponseError:
    """A reply as redis-py raises it from a pipeline: the command noted before it."""
    exc = redis_errors.ResponseError(reply)
    exc.args = (f"Command # 1 (SET bb:x 1) of pipeline caused error: {exc.args}",)
    return exc


@pytest.mark.parametrize(
    "exc, expected",
    [
        (redis_errors.ConnectionError("Connection refused"), "connection"),
        (redis_errors.TimeoutError("Timeout reading"), "timeout"),
        (ConnectionResetError(104, "reset"), "connection"),
        (redis_errors.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."), "oom"),
        (redis_errors.ResponseError("MISCONF Redis is configured to save RDB snapshots"), "misconf"),
        (pipeline_error("MISCONF Redis is configured to save RDB snapshots"), "misconf"),
        (redis_errors.ReadOnlyError("You can't write against a read only replica."), "readonly"),
        (redis_errors.ResponseError("BUSY Redis is busy running a script."), "busy"),
        (redis_errors.BusyLoadingError("Redis is loading the dataset in memory"), "loading"),
        (redis_errors.TryAgainError("Multiple keys request during rehashing of slot"), "tryagain"),
        (redis_errors.ClusterDownError("The cluster is down"), "clusterdown"),
        (redis_errors.ResponseError("MASTERDOWN Link with MASTER is down"), "clusterdown"),
        (redis_errors.NoScriptError("No matching script."), "noscript"),
        (KafkaConnectionError("broker down"), "kafka"),
        (ProducerSendError("Error while sending"), UNEXPECTED),
        (redis_errors.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"), UNEXPECTED),
        (pipeline_error("WRONGTYPE Operation against a key holding the wrong kind of value"), UNEXPECTED),
        (TopicAuthorizationFailedError(), UNEXPECTED),
        (ZeroDivisionError("float division by zero"), UNEXPECTED),
    ],
)
def test_error_classes(exc, expected):
    assert error_class(exc) == expected
    assert expected in ERROR_CLASSES


def test_a_send_error_is_as_transient_as_its_cause():
    try:
        raise ProducerSendError("Error while sending") from KafkaConnectionError("broker down")
    except ProducerSendError as exc:
        assert error_class(exc) == "kafka"


def test_an_outage_logs_when_it_starts_and_when_it_ends(caplog):
    now = [100.0]
    outage = Outage(logging.getLogger("test.outage"), "batch processing", clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="test.outage"):
        outage.recovered()
        for _ in range(40):
            outage.failed(redis_errors.OutOfMemoryError("command not allowed"))
            now[0] += 0.25
        outage.recovered()
        outage.recovered()
    assert [r.getMessage() for r in caplog.records] == [
        "batch processing failing (oom: command not allowed); retrying with backoff until it recovers",
        "batch processing recovered after 40 retries in 10.0s",
    ]


def test_backoff_doubles_up_to_its_cap():
    backoff = Backoff(0.5, 3.0)
    assert [backoff.next() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


# --- the batch handler -------------------------------------------------------------------


def events(ids, *, partition=0, first_offset=0):
    now_ms = int(time.time() * 1000)
    return [
        SimpleNamespace(
            message=SimpleNamespace(
                value=orjson.dumps({"id": i, "text": f"flight {i} delayed"}) if i is not None else b"not json",
                key=None, timestamp=now_ms / 1000, topic="raw", partition=partition, offset=first_offset + n, acked=False,
            )
        )
        for n, i in enumerate(ids)
    ]


class Failing:
    """Raises the given exceptions, one per call, then does what ``then`` does."""

    def __init__(self, failures, then):
        self.failures = list(failures)
        self.then = then
        self.calls = 0

    async def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return await self.then(*args, **kwargs)


class Crashes:
    def __init__(self):
        self.reasons = []

    async def __call__(self, reason):
        self.reasons.append(reason)


def handler_for(pipeline, metrics, stopped, crash):
    return BatchHandler(pipeline, metrics, stopped=stopped, crash=crash, stop_wait_s=0.2)


def sample(metrics: Metrics, name: str, **labels) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
def fast_backoff(monkeypatch):
    monkeypatch.setattr(Backoff.__init__, "__defaults__", (0.01, 0.02))


def pipeline_with(counters=None, escalator=None, dead_letter=None) -> Pipeline:
    async def no_dead_letters(message, reason):
        raise AssertionError(reason)

    cfg = PipelineConfig.from_settings(Settings(watch_terms=[]))
    return Pipeline(cfg, ActiveModel(Scorer("1")), counters or RecordingCounters(), escalator or NoEscalation(), dead_letter or no_dead_letters)


async def test_redis_refusing_writes_is_waited_out_and_the_batch_counted_once(fast_backoff, caplog):
    counters = RecordingCounters()
    counters.count_new = Failing(
        [redis_errors.OutOfMemoryError("command not allowed"), redis_errors.ResponseError("MISCONF no disk"), redis_errors.ReadOnlyError("replica")],
        counters.count_new,
    )
    metrics, crash, stopped = Metrics(), Crashes(), asyncio.get_running_loop().create_future()
    batch = events(["a", "b", "c"])
    with caplog.at_level(logging.INFO, logger="stream.agents"):
        result = await handler_for(pipeline_with(counters), metrics, stopped, crash).handle(batch)
    assert result.counted == 3 and counters.calls == [(["a", "b", "c"], "1")]
    assert not any(e.message.acked for e in batch) and crash.reasons == []
    assert {e: sample(metrics, "badbuzz_batch_retries_total", error=e) for e in ("oom", "misconf", "readonly", "busy")} == {
        "oom": 1,
        "misconf": 1,
        "readonly": 1,
        "busy": 0,
    }
    assert sample(metrics, "badbuzz_posts_counted_total") == 3
    assert len(caplog.records) == 2 and "recovered after 3 retries" in caplog.records[1].getMessage()


async def test_a_retry_resumes_where_the_batch_failed(fast_backoff):
    sent = []

    async def dead_letter(message, reason):
        sent.append(message.offset)

    flaky_dlq = Failing([KafkaConnectionError("broker away")], dead_letter)
    counters = RecordingCounters()
    evaluations = []

    class FlakyEscalator:
        failures = [redis_errors.OutOfMemoryError("command not allowed")]

        async def evaluate(self, minute, touched=None, since=None):
            if self.failures:
                raise self.failures.pop(0)
            evaluations.append(sorted(touched))

    metrics, stopped = Metrics(), asyncio.get_running_loop().create_future()
    handler = handler_for(pipeline_with(counters, FlakyEscalator(), flaky_dlq), metrics, stopped, Crashes())
    result = await handler.handle(events(["a", None, "b"]))
    # The dead letter was sent once, the posts counted once, the escalation still ran.
    assert sent == [1] and flaky_dlq.calls == 2
    assert counters.calls == [(["a", "b"], "1")] and evaluations == [["all"]]
    assert (result.counted, result.dead_lettered) == (2, 1)
    assert sample(metrics, "badbuzz_batch_retries_total", error="kafka") == 1
    assert sample(metrics, "badbuzz_batch_retries_total", error="oom") == 1


async def test_a_bug_holds_the_batch_and_stops_the_worker(caplog):
    counters = RecordingCounters()
    counters.count_new = Failing([redis_errors.ResponseError("WRONGTYPE Operation against a key")], counters.count_new)
    crash, stopped = Crashes(), asyncio.get_running_loop().create_future()
    handler = handler_for(pipeline_with(counters), Metrics(), stopped, crash)
    first, second = events(["a", "b"]), events(["c"], first_offset=2)
    with caplog.at_level(logging.INFO, logger="stream.agents"):
        assert await handler.handle(first) is None
        assert await handler.handle(second) is None
    # Held: Faust's acknowledgement after the batch finds them done and commits nothing.
    assert all(e.message.acked for e in first + second)
    assert [type(r) for r in crash.reasons] == [redis_errors.ResponseError]
    assert counters.calls == []
    assert caplog.records[0].levelname == "CRITICAL" and "stopping the worker without committing it" in caplog.records[0].getMessage()


async def test_a_stop_during_an_outage_holds_the_batch_within_the_stop_wait(fast_backoff):
    counters = RecordingCounters()
    counters.count_new = Failing([redis_errors.ConnectionError("refused")] * 10_000, counters.count_new)
    crash, stopped = Crashes(), asyncio.get_running_loop().create_future()
    handler = handler_for(pipeline_with(counters), Metrics(), stopped, crash)
    batch = events(["a", "b"])
    task = asyncio.ensure_future(handler.handle(batch))
    await asyncio.sleep(0.1)
    assert not task.done()
    started = time.monotonic()
    stopped.set_result(None)
    assert await asyncio.wait_for(task, 2) is None
    assert time.monotonic() - started < 0.5
    assert all(e.message.acked for e in batch) and crash.reasons == [] and counters.calls == []


async def test_a_stop_lets_a_slow_batch_finish_within_the_stop_wait_and_holds_the_next():
    counters = RecordingCounters()
    count_new = counters.count_new

    async def slow(posts, **kwargs):
        await asyncio.sleep(0.1)
        return await count_new(posts, **kwargs)

    counters.count_new = slow
    stopped = asyncio.get_running_loop().create_future()
    handler = handler_for(pipeline_with(counters), Metrics(), stopped, Crashes())
    first, second = events(["a"]), events(["b"], first_offset=1)
    task = asyncio.ensure_future(handler.handle(first))
    await asyncio.sleep(0.02)
    stopped.set_result(None)
    assert (await task).counted == 1 and not first[0].message.acked
    assert await handler.handle(second) is None and second[0].message.acked
    assert [ids for ids, _ in counters.calls] == [["a"]]


async def test_a_cancelled_batch_is_held_and_the_worker_stopped():
    counters = RecordingCounters()

    async def forever(posts, **kwargs):
        await asyncio.sleep(3600)

    counters.count_new = forever
    crash, stopped = Crashes(), asyncio.get_running_loop().create_future()
    handler = handler_for(pipeline_with(counters), Metrics(), stopped, crash)
    batch = events(["a"])
    task = asyncio.ensure_future(handler.handle(batch))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0)
    assert batch[0].message.acked and len(crash.reasons) == 1
