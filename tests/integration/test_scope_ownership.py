"""Each scope is evaluated by one worker, every minute the watermark crosses is evaluated in
order, and an evaluation older than the incident's latest decision is refused. Against
the real Redis, under a private prefix."""
from __future__ import annotations

import time
import uuid

import pytest
import redis.asyncio as aioredis
from faust.types import TP

from alerting.escalation import Escalator, owner_partition
from alerting.incidents import IncidentStore
from alerting.outbox import Outbox, OutboxConfig
from alerting.rules import Signal
from benchmarks.keys import delete_prefix
from counting.counters import Counters, ScoredPost
from models.scorer import ModelInfo
from stream.assignment import ScopeOwnership
from tests.configs import CONTENT, DEFAULTS, rule_config

pytestmark = pytest.mark.integration

MODEL = ModelInfo("tfidf", "negative_vs_rest", 0.5, "badbuzz-sentiment", "3", "models:/badbuzz-sentiment/3")
SCOPES = ["term:bag", "term:seat", "term:refund", "term:crew", "term:gate"]


@pytest.fixture
async def redis(live_services):
    client = aioredis.Redis.from_url(live_services[1])
    yield client
    await client.aclose()


@pytest.fixture
async def prefix(redis):
    name = f"test:owners:{uuid.uuid4().hex[:10]}"
    yield name
    await delete_prefix(redis, name)


def escalator(redis, prefix: str, owns=None) -> Escalator:
    outbox = Outbox(redis, prefix=prefix, sinks=["console"], cfg=OutboxConfig(retention_s=600, backoff_s=0.05, backoff_max_s=0.2, lease_s=5))
    store = IncidentStore(redis, prefix=prefix, ttl_s=600, outbox=outbox)
    counters = Counters(redis, prefix=prefix, ttl_s=3 * 3600)
    return Escalator(counters, store, rule_config(prior=0.5), SCOPES, lambda: MODEL, content=CONTENT, idle_s=DEFAULTS.alert_idle_s, owns=owns)


def test_every_scope_has_exactly_one_owner_whatever_the_assignment():
    partitions = 12
    workers = [ScopeOwnership("raw") for _ in range(3)]
    for k, ownership in enumerate(workers):
        ownership.assign({TP("raw", p) for p in range(partitions) if p % 3 == k} | {TP("other", k)}, partitions)
    for scope in ["all", *SCOPES]:
        assert sum(w.owns(scope) for w in workers) == 1
        assert workers[owner_partition(scope, partitions) % 3].owns(scope)
    workers[0].revoke()
    assert not any(workers[0].owns(s) for s in ["all", *SCOPES])
    # Without the topic's partition count a worker owns nothing rather than guess.
    unsure = ScopeOwnership("raw")
    unsure.assign({TP("raw", p) for p in range(partitions)}, 0)
    assert not any(unsure.owns(s) for s in ["all", *SCOPES])


async def test_a_worker_reads_and_decides_only_the_scopes_it_owns(redis, prefix):
    owned = {"all", "term:seat"}
    esc = escalator(redis, prefix, owns=lambda scope: scope in owned)
    read: list[list[str]] = []
    snapshot = esc.counters.snapshot

    async def recording(scopes, minutes, hours):
        read.append(list(scopes))
        return await snapshot(scopes, minutes, hours)

    esc.counters.snapshot = recording
    minute = int(time.time() // 60) - 1
    await esc.counters.count([ScoredPost(f"c{i}", minute * 60_000 + i, 0.2, False, ["all", "term:bag"], ()) for i in range(50)])
    await esc.evaluate(minute)
    await esc.evaluate(minute, {"all", "term:bag"})
    # History (hours, then minutes) and windows of the owned scopes only.
    assert read == [["all", "term:seat"], ["all", "term:seat"], ["all"]]


def day(start: int) -> list[list[ScoredPost]]:
    """30 minutes of calm posts with a burst about bags in minutes 12-14, minute by minute."""
    minutes = []
    for minute in range(start, start + 30):
        posts = [ScoredPost(f"p{minute}-{i}", minute * 60_000 + i, 0.2, False, ["all"], ()) for i in range(120)]
        if start + 12 <= minute < start + 15:
            posts += [ScoredPost(f"b{minute}-{i}", minute * 60_000 + i, 0.9, True, ["all", "term:bag"], ("bag",)) for i in range(120)]
        minutes.append(posts)
    return minutes


async def test_a_backlog_caught_up_at_once_announces_what_live_counting_announced(redis, prefix):
    start = int(time.time() // 60) - 40
    live = escalator(redis, f"{prefix}:live")
    announced_live = []
    for minute, posts in enumerate(day(start)):
        await live.counters.count(posts)
        announced_live += await live.evaluate(start + minute)
    backlog = escalator(redis, prefix)
    minutes = day(start)
    await backlog.counters.count(minutes[0])
    assert await backlog.evaluate(start) == []
    # The rest arrives at once (a worker catching up): the watermark jumps 29 minutes.
    await backlog.counters.count([p for posts in minutes[1:] for p in posts])
    announced = await backlog.evaluate(start + 29)

    def what(alerts):
        return [(a.action, a.signal, a.scope, a.window_end, a.volume, a.negatives) for a in alerts]

    assert [a[0] for a in what(announced_live)] == ["opened", "escalated", "resolved"]
    assert what(announced) == what(announced_live)
    incident = (await backlog.incidents.get_many([(Signal.NEGATIVE_RATE, "term:bag")]))[(Signal.NEGATIVE_RATE, "term:bag")]
    assert incident.episode.decided_minute == start + 29
    # An owner still evaluating an older minute (a handover it has not noticed yet)
    # decides nothing: the rate at minute 13 would reopen the incident.
    await redis.delete(f"{{{prefix}}}:evaluated")
    late = escalator(redis, prefix)
    assert await late.evaluate(start + 13) == []
    # A worker whose very first batch is the whole backlog decides it from its oldest
    # minute on, as live counting did; without ``since`` it would decide the last minute only.
    first = escalator(redis, f"{prefix}:first")
    await first.counters.count([p for posts in day(start) for p in posts])
    assert what(await first.evaluate(start + 29, since=start)) == what(announced_live)
    await delete_prefix(redis, f"{prefix}:live")
    await delete_prefix(redis, f"{prefix}:first")


async def owner_dies_after_minute_10(redis, prefix: str, start: int) -> list[list]:
    """An owner evaluates the first 11 calm minutes of ``day(start)``, then dies; the burst
    (minutes 12-14) and the rest are counted by others. What it announced, minute by minute."""
    minutes = day(start)
    old_owner = escalator(redis, prefix)
    announced = []
    for minute in range(11):
        await old_owner.counters.count(minutes[minute])
        announced.append(await old_owner.evaluate(start + minute))
    await old_owner.counters.count([p for posts in minutes[11:] for p in posts])
    return announced


async def test_a_new_owner_evaluates_the_minutes_the_old_one_had_not_reached(redis, prefix):
    start = int(time.time() // 60) - 40
    assert await owner_dies_after_minute_10(redis, prefix, start) == [[]] * 11
    new_owner = escalator(redis, prefix)
    announced = await new_owner.evaluate(start + 29)
    assert [(a.action, a.scope) for a in announced] == [("opened", "term:bag"), ("escalated", "term:bag"), ("resolved", "term:bag")]


async def test_a_scope_taken_over_while_the_watermark_stands_still_is_caught_up(redis, prefix):
    start = int(time.time() // 60) - 40
    await owner_dies_after_minute_10(redis, prefix, start)
    owned = {"term:seat"}
    survivor = escalator(redis, prefix, owns=lambda scope: scope in owned)
    assert await survivor.evaluate(start + 29) == []
    # The old owner's partition moves here; no post arrives any more: same minute.
    owned.add("term:bag")
    announced = await survivor.evaluate(start + 29, set())
    assert [(a.action, a.scope) for a in announced] == [("opened", "term:bag"), ("escalated", "term:bag"), ("resolved", "term:bag")]
