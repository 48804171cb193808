"""Windowed counters in Redis, partitioned like the stream: every key a batch writes
carries the hash tag of the Kafka partition its posts came from (``{P:p<N>}``), so each
partition's share of a batch is counted atomically on a single Redis Cluster slot, and
the partitions spread over the cluster's shards. One script call counts every partition
of a batch whose keys may share a slot (all of them on a single Redis). Readers sum the
partitions.

Per partition and (scope, event-time minute): the post count, negative count and score
sum; the most frequent terms of that minute's negative posts (the alert drivers); the
minute's most confidently negative posts (alert examples). Per partition and (scope,
hour): a rollup of the counts and of the minutes that had any post (the live minutes
baselines divide by), kept for weeks.

A partition has one consumer, so its worker is the only writer of the partition's keys:
it keeps the values of the minutes it is filling in memory and sends Redis their new
values, which the script stores with one command a key. Redis does no arithmetic, no
sorting and no merging per post, and nearly nothing per batch. The script checks, before
writing anything, that the partition's write version is the one the worker's copy was
read at; when another worker wrote since (a rebalance, a worker thought dead), nothing is
written and the worker reads the partition again. A minute newer than anything the
partition had counted when the worker read it cannot be in Redis, so filling new
minutes needs no read.

Exactly once without a key per post:

- The partition's last counted offset is stored by the same script that writes the
  counts, so a redelivered message (a worker killed mid-batch, a rebalance, a retry
  after a lost reply) is recognised by its offset and skipped; on assignment the worker
  resumes from that offset (``stream.assignment``), which also recounts what a Redis that
  lost its last writes forgot. A worker that finds Redis's offset behind the one it
  counted through itself stops (``CountsLost``) so that its restart does that.
- The same post id arriving twice from the feed within ``BADBUZZ_DEDUP_WINDOW_S`` is
  counted once: the partition's worker keeps the window's id hashes in memory
  (``counting.dedup``) and drops known ids before the script runs; the script stores
  each batch's hashes (8 bytes a post) in the hash of its arrival minute, kept for the
  window, from which a worker taking the partition over rebuilds the window.

A minute's examples carry what the console may show of them (masked text, link) and
the model version that scored them; when an alert shows them, that and the model's
score are copied apart (``T:post:<id>``) for the counters' retention, so that the
console can show them and feedback on them can be checked once later posts have pushed
them out of their minute's examples.

Key layout (``T`` is ``{P:p<partition>}``, ``P`` is ``BADBUZZ_REDIS_PREFIX``):
``T:o`` (hash: ``o`` last counted offset, ``t`` newest counted event ms, ``v`` write
version), ``T:d:<arrival minute>`` (hash: the id hashes of each batch),
``T:m:<minute>`` (hash, per scope: ``b:<scope>`` = ``n neg s``, ``t:<scope>`` = JSON
``{term: count}``, ``x:<scope>`` = JSON ``[[score, id, other scopes, text, link, model],
...]``), ``T:h:<hour>`` (hash: ``<scope>`` = ``n neg live-minute-mask``),
``T:post:<id>``; ``P:partitions`` (the partitions ever counted, for readers)."""
from __future__ import annotations

import asyncio
import heapq
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import orjson
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from counting.dedup import DedupWindow, id_hash
from counting.windows import Bucket, WindowStats, aggregate, window_minutes

# Driver terms kept per (partition, scope, minute): the alert's drivers are the terms
# frequent in its window; the long tail of words is what gets dropped (ties broken by a
# hash of the term, not its spelling).
TERMS_KEPT = 64
# Hourly rollups outlive the minute buckets: five weeks covers a four-week lookback at
# the same hour of week.
HOUR_TTL_S = 35 * 24 * 3600
EXAMPLES_PER_MINUTE = 5
DEDUP_WINDOW_S = 600
# The dedup hashes are grouped by arrival minute: one hash per partition and minute, a
# value per batch of at most 255 hashes (with its header, a value just fits 2 KiB).
DEDUP_SLOT_MS = 60_000
DEDUP_PIECE = 255
# How far behind the partition's newest minute a worker keeps minutes in memory; older
# ones (late posts) are read back from Redis when written again.
CACHED_MINUTES = 5
# A partition not counted for this long is read again before its next batch: what is in
# memory may have expired in Redis meanwhile.
CACHE_IDLE_S = 60.0

# Counts the batches of several partitions whose keys share a slot (all of them on a
# single Redis), each atomically and independently of the others. Per partition, in
# KEYS: its state, then the keys to write; in ARGV: the number of keys to write, the
# write version and counted offset the caller's values were computed from, the batch's
# first offset, the offset counted through and the newest event time; then for each key
# its TTL (0: a hash that has one already) and number of fields, then the fields and
# values of a hash (HSET), or the value of a string when it has none. ARGV[1]: the
# state's TTL.
# Returns per partition (the new write version, the offset counted through), or a
# refusal and Redis's counted offset: -1 Redis lost counts the caller saw it write, -3
# another worker wrote since the caller read the partition, -2 some of the posts are
# counted already (redelivered).
_COUNT_SCRIPT = """
local out = {}
local a, k = 2, 1
while a <= #ARGV do
  local nwrites = tonumber(ARGV[a])
  local state_key = KEYS[k]
  local state = redis.call('HMGET', state_key, 'o', 't', 'v')
  local counted = tonumber(state[1] or '-1')
  local newest = tonumber(state[2] or '0')
  local version = tonumber(state[3] or '0')
  local first = tonumber(ARGV[a + 3])
  local refused = nil
  if counted < tonumber(ARGV[a + 2]) then refused = -1
  elseif version ~= tonumber(ARGV[a + 1]) then refused = -3
  elseif first >= 0 and first <= counted then refused = -2 end
  local through = math.max(tonumber(ARGV[a + 4]), counted)
  local batch_newest = tonumber(ARGV[a + 5])
  a = a + 6
  for w = 1, nwrites do
    local key = KEYS[k + w]
    local ttl, nfields = ARGV[a], tonumber(ARGV[a + 1])
    if nfields == 0 then
      if not refused then redis.call('SET', key, ARGV[a + 2], 'EX', ttl) end
      a = a + 3
    else
      if not refused then
        redis.call('HSET', key, unpack(ARGV, a + 2, a + 1 + 2 * nfields))
        if ttl ~= '0' then redis.call('EXPIRE', key, ttl) end
      end
      a = a + 2 + 2 * nfields
    end
  end
  if refused then
    out[#out + 1] = refused
    out[#out + 1] = counted
  else
    redis.call('HSET', state_key, 'o', tostring(through), 't', tostring(math.max(newest, batch_newest)), 'v', tostring(version + 1))
    -- A partition idle for the rollups' retention resumes at Kafka's committed offset.
    redis.call('EXPIRE', state_key, ARGV[1])
    out[#out + 1] = version + 1
    out[#out + 1] = through
  end
  k = k + 1 + nwrites
end
return out
"""

# The partition's state and some of its values, read at one instant: KEYS[2..] with, in
# ARGV, the field to read of each, or '*' for all of its values.
_READ_SCRIPT = """
local out = redis.call('HMGET', KEYS[1], 'o', 't', 'v')
for k = 2, #KEYS do
  if ARGV[k - 1] == '*' then out[k + 2] = redis.call('HVALS', KEYS[k]) else out[k + 2] = redis.call('HGET', KEYS[k], ARGV[k - 1]) end
end
return out
"""


@dataclass(frozen=True, slots=True)
class ScoredPost:
    id: str
    event_ms: int
    score: float
    negative: bool
    scopes: Sequence[str]
    terms: Sequence[str]
    # Its Kafka offset in the partition being counted; -1 when it did not come from Kafka
    # (then only the dedup window keeps it from counting twice).
    offset: int = -1


@dataclass(frozen=True, slots=True)
class ShownPost:
    """What people may see of an example post: its text with handles and links masked,
    and a link to it when the feed gave one."""

    text: str
    url: str | None = None


@dataclass(frozen=True, slots=True)
class HourBucket:
    total: int = 0
    negative: int = 0
    live_minutes: int = 0


@dataclass(frozen=True, slots=True)
class Prediction:
    score: float
    negative: bool
    model_version: str


@dataclass(slots=True)
class MinuteState:
    """One (partition, scope, minute) as Redis has it."""

    n: int = 0
    neg: int = 0
    s: float = 0.0
    terms: dict[str, int] = field(default_factory=dict)
    # Best first: the reader's order.
    examples: list[Example] = field(default_factory=list)


def _term_rank(item: tuple[str, int]) -> tuple[int, int, str]:
    return (-item[1], zlib.crc32(item[0].encode("utf-8", "surrogatepass")), item[0])


def merge_terms(kept: dict[str, int], added: dict[str, int], cap: int = TERMS_KEPT) -> dict[str, int]:
    """The minute's terms after a batch: counts added, the ``cap`` most frequent kept."""
    merged = dict(kept)
    for term, count in added.items():
        merged[term] = merged.get(term, 0) + count
    return dict(sorted(merged.items(), key=_term_rank)[:cap])


# A minute's example post: (score, post id, the post's other scopes, what the console may
# show of it: masked text, link; the model version that scored it).
Example = tuple[float, str, tuple[str, ...], str, "str | None", str]


def _example(entry: list) -> Example:
    score, post_id, others, text, url, model = entry
    return (float(score), str(post_id), tuple(others), str(text), url, str(model))


def _example_rank(entry: tuple) -> tuple[float, str]:
    return (-entry[0], entry[1])


def merge_examples(kept: Sequence[Example], offered: Iterable[Example], k: int) -> list[Example]:
    """The minute's ``k`` most confidently negative posts after a batch (ties by id, as
    readers rank them)."""
    best = {entry[1]: entry for entry in kept}
    for entry in offered:
        if entry[1] not in best or entry[0] > best[entry[1]][0]:
            best[entry[1]] = entry
    return heapq.nsmallest(k, best.values(), key=_example_rank)


@dataclass(slots=True)
class _GroupSums:
    n: int = 0
    neg: int = 0
    s: float = 0.0
    terms: dict[str, int] = field(default_factory=dict)
    # (score, post id, the post's other scopes, its position in the batch)
    negatives: list[tuple[float, str, tuple[str, ...], int]] = field(default_factory=list)


def batch_sums(posts: Sequence[ScoredPost]) -> dict[tuple[str, int], _GroupSums]:
    """A batch's counts per (scope, minute), with the terms and (score, id, position) of
    its negative posts."""
    groups: dict[tuple[str, int], _GroupSums] = {}
    for position, post in enumerate(posts):
        minute = post.event_ms // 60_000
        for scope in post.scopes:
            group = groups.get((scope, minute))
            if group is None:
                group = groups[(scope, minute)] = _GroupSums()
            group.n += 1
            group.s += post.score
            if post.negative:
                group.neg += 1
                group.negatives.append((post.score, post.id, tuple(other for other in post.scopes if other != scope), position))
                terms = group.terms
                for term in post.terms:
                    terms[term] = terms.get(term, 0) + 1
    return groups


@dataclass(slots=True)
class _Partition:
    """What the partition's worker knows of it: the dedup window, the offset it counted
    through, the write version its copy was read at, and the minutes and hours it is
    filling. A minute or hour not in ``minutes``/``hours`` is empty in Redis when all of
    it is after ``floor`` (the newest minute counted before this copy was read, or
    dropped from it since)."""

    window: DedupWindow
    expected: int
    version: int
    floor: int
    minutes: dict[tuple[str, int], MinuteState] = field(default_factory=dict)
    hours: dict[tuple[str, int], list[int]] = field(default_factory=dict)
    # The minute and hour hashes this copy has given their TTL: not given it again.
    expiring: set[str] = field(default_factory=set)
    used_at: float = 0.0

    def forget_before(self, minute: int) -> None:
        old = [key for key in self.minutes if key[1] < minute]
        if old:
            self.expiring.clear()
        for key in old:
            del self.minutes[key]
            self.floor = max(self.floor, key[1])
        hour = minute // 60
        old_hours = [key for key in self.hours if key[1] < hour]
        for key in old_hours:
            del self.hours[key]
            self.floor = max(self.floor, key[1] * 60 + 59)


def _parse_bucket(raw: bytes | None) -> tuple[int, int, float] | None:
    if raw is None:
        return None
    n, neg, s = raw.split()
    return int(n), int(neg), float(s)


def _parse_hour(raw: bytes | None) -> list[int] | None:
    if raw is None:
        return None
    return [int(v) for v in raw.split()]


@dataclass(frozen=True, slots=True)
class PartitionBatch:
    """One partition's posts of a batch, as ``Counters.count_batch`` counts them."""

    partition: int
    posts: Sequence[ScoredPost]
    through_offset: int = -1
    arrived_ms: int | None = None
    shown: Callable[[int], ShownPost] | None = None
    expected_through: int = -1


@dataclass(slots=True)
class _Job:
    """One partition's counting in progress: the positions of its posts still to count,
    and what the next script call writes."""

    part: PartitionBatch
    tag: str
    now_ms: int
    state: _Partition
    hashes: list[int]
    remaining: list[int]
    sums: dict[tuple[str, int], _GroupSums] = field(default_factory=dict)
    minutes: dict[tuple[str, int], MinuteState] = field(default_factory=dict)
    hours: dict[tuple[str, int], list[int]] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)
    args: list = field(default_factory=list)


class CountsLost(Exception):
    """Redis no longer has counts this worker wrote and saw acknowledged."""

    def __init__(self, partition: int, redis_through: int, counted_through: int):
        super().__init__(
            f"Redis has partition {partition} counted through offset {redis_through}, but this worker counted it through {counted_through}: "
            "Redis lost acknowledged writes (a failover or restart); the messages after its offset must be read again"
        )
        self.partition = partition
        self.redis_through = redis_through


def partition_tag(prefix: str, partition: int) -> str:
    """The hash tag of one partition's counters: all of them in one cluster slot."""
    return "{" + f"{prefix}:p{partition}" + "}"


class Counters:
    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        prefix: str,
        ttl_s: int,
        hour_ttl_s: int = HOUR_TTL_S,
        examples_per_minute: int = EXAMPLES_PER_MINUTE,
        dedup_window_s: int = DEDUP_WINDOW_S,
        keep_predictions: str = "examples",
    ):
        self.redis = redis
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.hour_ttl_s = max(hour_ttl_s, ttl_s)
        self.examples_per_minute = examples_per_minute
        self.dedup_window_s = dedup_window_s
        # "all": every post's prediction kept for the retention (feedback on any post can be
        # checked; about as much Redis as a key per post). "examples": only the alert examples'.
        self.keep_all_predictions = keep_predictions == "all"
        self._count = redis.register_script(_COUNT_SCRIPT)
        self._read = redis.register_script(_READ_SCRIPT)
        self._registered: set[int] = set()
        self._partitions: dict[int, _Partition] = {}

    def _tag(self, partition: int) -> str:
        return partition_tag(self.prefix, partition)

    async def partitions(self) -> list[int]:
        """Every partition whose posts were ever counted under this prefix."""
        return sorted(int(p) for p in await self.redis.smembers(f"{self.prefix}:partitions"))

    async def count(self, posts: Sequence[ScoredPost], *, model_version: str = "", partition: int = 0) -> int:
        """Count posts not seen before; return how many were new."""
        return len(await self.count_new(posts, model_version=model_version, partition=partition))

    async def count_new(
        self,
        posts: Sequence[ScoredPost],
        *,
        model_version: str = "",
        shown: Callable[[int], ShownPost] | None = None,
        partition: int = 0,
        through_offset: int = -1,
        arrived_ms: int | None = None,
        expected_through: int = -1,
    ) -> list[int]:
        """Count the posts of one partition not counted before; return their positions in
        ``posts``, ascending (``count_batch`` for one partition)."""
        part = PartitionBatch(partition, posts, through_offset, arrived_ms, shown, expected_through)
        return (await self.count_batch([part], model_version=model_version))[partition]

    async def count_batch(self, parts: Sequence[PartitionBatch], *, model_version: str = "") -> dict[int, list[int]]:
        """Count each partition's posts not counted before; return, per partition, their
        positions in its ``posts``, ascending. A post is skipped when its offset is at or
        below the partition's last counted offset, or when its id was counted within the
        dedup window. ``through_offset`` (the batch's last offset in the partition, dead
        letters included) is stored as counted with the counts. ``arrived_ms`` is the clock
        of the dedup window (the messages' Kafka timestamps; now by default).
        ``expected_through``: the offset the caller itself last counted in the partition;
        if Redis's is older, Redis lost those writes and ``CountsLost`` is raised (the
        other partitions are counted). ``model_version`` is kept with the example posts'
        predictions; ``shown(position)`` gives what the console may show of a post: it is
        asked only for the posts that become a minute's examples, and kept
        (``T:post:<id>``). The partitions whose keys share a slot (all of them, on a single
        Redis) are counted by one script call: a round trip and a script run cost Redis
        more than the writes of a few dozen posts."""
        results: dict[int, list[int]] = {}
        jobs = []
        for part in parts:
            if not part.posts and part.through_offset < 0:
                results[part.partition] = []
            else:
                jobs.append(await self._start(part))
        lost: CountsLost | None = None
        while jobs:
            for job in jobs:
                await self._prepare(job, model_version)
            retry = []
            for job, (code, counted) in zip(jobs, await self._run(jobs)):
                if code >= 0:
                    self._finish(job, code)
                    results[job.part.partition] = job.remaining
                elif code == -1:
                    lost = lost or CountsLost(job.part.partition, counted, job.state.expected)
                elif code == -3:
                    await self._reread(job, max(job.state.expected, counted))
                    retry.append(job)
                else:
                    if job.state.expected >= 0:
                        job.state.expected = max(job.state.expected, counted)
                    job.remaining = [i for i in job.remaining if job.part.posts[i].offset > counted or job.part.posts[i].offset < 0]
                    retry.append(job)
            jobs = retry
        if lost is not None:
            raise lost
        return results

    async def _start(self, part: PartitionBatch) -> _Job:
        partition = part.partition
        if partition not in self._registered:
            pipe = self.redis.pipeline(transaction=False)
            pipe.sadd(f"{self.prefix}:partitions", partition)
            pipe.expire(f"{self.prefix}:partitions", self.hour_ttl_s)
            await pipe.execute()
            self._registered.add(partition)
        now_ms = int(time.time() * 1000) if part.arrived_ms is None else part.arrived_ms
        state = self._partitions.get(partition)
        if state is None or time.monotonic() - state.used_at > CACHE_IDLE_S:
            state = await self._read_partition(partition, now_ms, max(part.expected_through, state.expected if state else -1))
        state.expected = max(state.expected, part.expected_through)
        hashes = [id_hash(post.id) for post in part.posts]
        remaining = [i for i, new in enumerate(state.window.fresh(hashes, now_ms)) if new]
        return _Job(part, self._tag(partition), now_ms, state, hashes, remaining)

    async def _prepare(self, job: _Job, model_version: str) -> None:
        """The job's values after its batch, from what Redis has (read when needed)."""
        while True:
            chosen = [job.part.posts[i] for i in job.remaining]
            job.sums = batch_sums(chosen)
            if await self._read_missing(job.tag, job.state, job.sums):
                break
            await self._reread(job, job.state.expected)
        job.minutes, job.hours, writes = self._plan(job.tag, job.state, job.sums, chosen, model_version, job.part.shown, job.remaining)
        if job.remaining:
            writes[f"{job.tag}:d:{job.now_ms // DEDUP_SLOT_MS}"] = (
                self.dedup_window_s + 3 * DEDUP_SLOT_MS // 1000, self._dedup_fields(job.state, job.hashes, job.remaining)
            )
        offsets = [p.offset for p in chosen if p.offset >= 0]
        job.keys = [f"{job.tag}:o", *writes]
        job.args = [
            len(writes), job.state.version, job.state.expected, min(offsets, default=-1), job.part.through_offset,
            max((p.event_ms for p in chosen), default=0),
        ]
        for ttl, written in writes.values():
            job.args += [ttl, len(written) // 2, *written] if isinstance(written, list) else [ttl, 0, written]

    async def _reread(self, job: _Job, expected: int) -> None:
        """Another worker wrote the job's partition since its copy was read: read it again,
        and drop the posts that worker counted (now in the dedup window)."""
        job.state = await self._read_partition(job.part.partition, job.now_ms, expected)
        job.remaining = [i for i, new in zip(job.remaining, job.state.window.fresh([job.hashes[i] for i in job.remaining], job.now_ms)) if new]

    async def _run(self, jobs: Sequence[_Job]) -> list[tuple[int, int]]:
        """Runs the jobs' writes, one script call per hash slot; each job's (code, offset)."""
        groups: dict[int, list[int]] = {}
        for i, job in enumerate(jobs):
            groups.setdefault(key_slot(job.tag.encode()) if isinstance(self.redis, RedisCluster) else 0, []).append(i)

        async def run(members: list[int]) -> list[int]:
            keys = [key for i in members for key in jobs[i].keys]
            args = [self.hour_ttl_s, *(arg for i in members for arg in jobs[i].args)]
            return [int(v) for v in await self._count(keys=keys, args=args)]

        replies = await asyncio.gather(*(run(members) for members in groups.values()))
        out: list[tuple[int, int]] = [(0, 0)] * len(jobs)
        for members, reply in zip(groups.values(), replies):
            for n, i in enumerate(members):
                out[i] = (reply[2 * n], reply[2 * n + 1])
        return out

    def _finish(self, job: _Job, version: int) -> None:
        state, part = job.state, job.part
        state.version = version
        state.minutes.update(job.minutes)
        state.hours.update(job.hours)
        state.expiring.update(key for key in job.keys if key.startswith((f"{job.tag}:m:", f"{job.tag}:h:")))
        state.window.add((job.hashes[i] for i in job.remaining), job.now_ms)
        if part.through_offset >= 0:
            state.expected = max(state.expected, part.through_offset)
        if job.sums:
            state.forget_before(max(minute for _, minute in job.sums) - CACHED_MINUTES)
        state.used_at = time.monotonic()
        self._partitions[part.partition] = state

    @staticmethod
    def _dedup_fields(state: _Partition, hashes: Sequence[int], positions: Sequence[int]) -> list:
        """The batch's id hashes as fields of its arrival minute's hash, named after the
        write version the batch makes, in pieces that fill Redis's allocations (a value of
        8 × 255 bytes and its header just fit 2 KiB)."""
        packed = np.fromiter((hashes[i] for i in positions), dtype=">i8", count=len(positions)).tobytes()
        piece = 8 * DEDUP_PIECE
        return [item for start in range(0, len(packed), piece) for item in (f"{state.version + 1}.{start // piece}", packed[start:start + piece])]

    @staticmethod
    def _ttl_once(state: _Partition, key: str, ttl: int) -> int:
        """A hash's TTL is given once per copy of the partition (0: none to give)."""
        return 0 if key in state.expiring else ttl

    @staticmethod
    def _entry(
        offered: Example, position: int, shown: Callable[[int], ShownPost] | None, positions: Sequence[int], model_version: str
    ) -> Example:
        seen = shown(positions[position]) if shown is not None else ShownPost("")
        return (offered[0], offered[1], offered[2], seen.text, seen.url, model_version)

    async def _read_partition(self, partition: int, now_ms: int, expected: int) -> _Partition:
        """The partition as Redis has it now: its write version, its newest counted
        minute and its dedup window."""
        tag = self._tag(partition)
        slots = range((now_ms - self.dedup_window_s * 1000) // DEDUP_SLOT_MS, now_ms // DEDUP_SLOT_MS + 1)
        reply = await self._read(keys=[f"{tag}:o", *(f"{tag}:d:{slot}" for slot in slots)], args=["*"] * len(slots))
        window = DedupWindow(self.dedup_window_s * 1000)
        for slot, batches in zip(slots, reply[3:]):
            if batches:
                window.add(np.frombuffer(b"".join(batches), dtype=">i8").tolist(), min((slot + 1) * DEDUP_SLOT_MS - 1, now_ms))
        newest = int(reply[1]) if reply[1] is not None else -1
        return _Partition(window, expected, int(reply[2] or 0), newest // 60_000 if newest >= 0 else -1)

    async def _read_missing(self, tag: str, state: _Partition, sums: dict[tuple[str, int], _GroupSums]) -> bool:
        """Puts the minutes and hours the batch writes in ``state``: read from Redis when
        they may be there. False when the partition was written since ``state`` was read."""
        minutes = [key for key in sums if key not in state.minutes]
        hours = list(dict.fromkeys((scope, minute // 60) for scope, minute in sums if (scope, minute // 60) not in state.hours))
        stored_minutes = [key for key in minutes if key[1] <= state.floor]
        stored_hours = [key for key in hours if key[1] * 60 <= state.floor]
        if stored_minutes or stored_hours:
            keys, fields = [f"{tag}:o"], []
            for scope, minute in stored_minutes:
                keys += [f"{tag}:m:{minute}"] * 3
                fields += [f"b:{scope}", f"t:{scope}", f"x:{scope}"]
            keys += [f"{tag}:h:{hour}" for _, hour in stored_hours]
            fields += [scope for scope, _ in stored_hours]
            reply = await self._read(keys=keys, args=fields)
            if int(reply[2] or 0) != state.version:
                return False
            values = iter(reply[3:])
            for key in stored_minutes:
                bucket, terms, examples = next(values), next(values), next(values)
                n, neg, s = _parse_bucket(bucket) or (0, 0, 0.0)
                state.minutes[key] = MinuteState(
                    n, neg, s, orjson.loads(terms) if terms else {}, [_example(entry) for entry in orjson.loads(examples)] if examples else []
                )
            for key in stored_hours:
                state.hours[key] = _parse_hour(next(values)) or [0, 0, 0]
        for key in minutes:
            state.minutes.setdefault(key, MinuteState())
        for key in hours:
            state.hours.setdefault(key, [0, 0, 0])
        return True

    def _plan(
        self, tag: str, state: _Partition, sums: dict[tuple[str, int], _GroupSums], posts: Sequence[ScoredPost], model_version: str,
        shown: Callable[[int], ShownPost] | None, positions: Sequence[int],
    ) -> tuple[dict[tuple[str, int], MinuteState], dict[tuple[str, int], list[int]], dict[str, tuple[int, list | bytes]]]:
        """The minutes' and hours' values after the batch, and what to write: per key its
        TTL and the fields and values of a hash, or a string's value."""
        ttl, k = self.ttl_s, self.examples_per_minute
        minutes: dict[tuple[str, int], MinuteState] = {}
        hours: dict[tuple[str, int], list[int]] = {}
        writes: dict[str, tuple[int, list | bytes]] = {}
        for (scope, minute), group in sums.items():
            old = state.minutes[(scope, minute)]
            new = MinuteState(old.n + group.n, old.neg + group.neg, old.s + group.s, old.terms, old.examples)
            fields = writes.setdefault(f"{tag}:m:{minute}", (self._ttl_once(state, f"{tag}:m:{minute}", ttl), []))[1]
            fields += [f"b:{scope}", f"{new.n} {new.neg} {new.s!r}"]
            if group.terms:
                new.terms = merge_terms(old.terms, group.terms)
                fields += [f"t:{scope}", orjson.dumps(new.terms)]
            if k > 0 and group.negatives:
                # Decided on (score, id); what the console may show is asked for the posts
                # that enter only.
                kept = {entry[1]: entry for entry in old.examples}
                best = merge_examples(old.examples, ((score, post_id, others, "", None, "") for score, post_id, others, _ in group.negatives), k)
                if [entry[1] for entry in best] != [entry[1] for entry in old.examples]:
                    positions_of = {post_id: position for _, post_id, _, position in group.negatives}
                    new.examples = [kept.get(entry[1]) or self._entry(entry, positions_of[entry[1]], shown, positions, model_version) for entry in best]
                    fields += [f"x:{scope}", orjson.dumps(new.examples)]
            minutes[(scope, minute)] = new
            hour = hours.get((scope, minute // 60))
            if hour is None:
                hour = hours[(scope, minute // 60)] = list(state.hours[(scope, minute // 60)])
            hour[0] += group.n
            hour[1] += group.neg
            hour[2] |= 1 << (minute % 60)
        for (scope, hour_number), (n, neg, live) in hours.items():
            key = f"{tag}:h:{hour_number}"
            writes.setdefault(key, (self._ttl_once(state, key, self.hour_ttl_s), []))[1].extend((scope, f"{n} {neg} {live}"))
        if self.keep_all_predictions:
            for post in posts:
                writes[f"{tag}:post:{post.id}"] = (ttl, orjson.dumps({"score": post.score, "negative": post.negative, "model": model_version}))
        return minutes, hours, writes

    async def dedup_window(self, partition: int, now_ms: int) -> DedupWindow:
        """The partition's dedup window as Redis has it (what a worker taking the
        partition over starts from)."""
        return (await self._read_partition(partition, now_ms, -1)).window

    async def counted_offsets(self, partitions: Sequence[int]) -> dict[int, int]:
        """The last counted offset of each of these partitions that has one."""
        pipe = self.redis.pipeline(transaction=False)
        for partition in partitions:
            pipe.hget(f"{self._tag(partition)}:o", "o")
        return {p: int(o) for p, o in zip(partitions, await pipe.execute()) if o is not None and int(o) >= 0}

    async def watermark_ms(self) -> int:
        """The newest event time counted, over all partitions."""
        partitions = await self.partitions()
        if not partitions:
            return 0
        pipe = self.redis.pipeline(transaction=False)
        for partition in partitions:
            pipe.hget(f"{self._tag(partition)}:o", "t")
        return max((int(t) for t in await pipe.execute() if t is not None), default=0)

    async def buckets(self, scope: str, minutes: range) -> dict[int, Bucket]:
        return (await self.snapshot([scope], minutes, []))[scope][0]

    async def window(self, scope: str, end_minute: int, length_min: int, *, offset_min: int = 0) -> WindowStats:
        minutes = window_minutes(end_minute, length_min, offset_min=offset_min)
        return aggregate(await self.buckets(scope, minutes), minutes)

    async def windows(self, scope: str, end_minute: int, lengths: Sequence[int]) -> dict[int, WindowStats]:
        """Several trailing windows from one read of the longest."""
        longest = window_minutes(end_minute, max(lengths))
        buckets = await self.buckets(scope, longest)
        return {length: aggregate(buckets, window_minutes(end_minute, length)) for length in lengths}

    async def _fields(self, reads_of: Callable[[str], list[tuple[str, list[str]]]]) -> list[tuple[int, list[bytes | None]]]:
        """Per partition, the values of ``reads_of(tag)``'s (hash, fields), in order, in
        one round trip."""
        partitions = await self.partitions()
        reads = [reads_of(self._tag(partition)) for partition in partitions]
        if not any(reads):
            return [(partition, []) for partition in partitions]
        pipe = self.redis.pipeline(transaction=False)
        for wanted in reads:
            for key, fields in wanted:
                pipe.hmget(key, fields)
        replies = iter(await pipe.execute())
        return [(partition, [value for _ in wanted for value in next(replies)]) for partition, wanted in zip(partitions, reads)]

    async def term_counts(self, scope: str, minutes: range) -> dict[str, int]:
        """Term counts of the negative posts in these minutes (each post counts a term once)."""
        totals: dict[str, int] = {}
        for _, values in await self._fields(lambda tag: [(f"{tag}:m:{minute}", [f"t:{scope}"]) for minute in minutes]):
            for raw in values:
                if raw:
                    for term, count in orjson.loads(raw).items():
                        totals[term] = totals.get(term, 0) + count
        return totals

    async def examples(self, scope: str, minutes: range, k: int, *, keep: bool = False) -> list[str]:
        """Ids of the most confidently negative posts in these minutes (ties by id).
        ``keep``: an alert shows them, so what the console may show of them and what the
        model said are kept (``T:post:<id>``) for the counters' retention, however many
        better posts come later."""
        if k <= 0:
            return []
        best: dict[str, tuple[int, Example]] = {}
        for partition, values in await self._fields(lambda tag: [(f"{tag}:m:{minute}", [f"x:{scope}"]) for minute in minutes]):
            for raw in values:
                for entry in map(_example, orjson.loads(raw) if raw else ()):
                    if entry[1] not in best or entry[0] > best[entry[1]][1][0]:
                        best[entry[1]] = (partition, entry)
        chosen = sorted(best.values(), key=lambda found: _example_rank(found[1]))[:k]
        if keep and chosen:
            pipe = self.redis.pipeline(transaction=False)
            for partition, (score, post_id, _, text, url, model) in chosen:
                shown = {"text": text, "url": url, "score": score, "negative": True, "model": model}
                pipe.set(f"{self._tag(partition)}:post:{post_id}", orjson.dumps(shown), ex=self.ttl_s)
            await pipe.execute()
        return [entry[1] for _, entry in chosen]

    async def snapshot(
        self, scopes: Sequence[str], minutes: range, hours: Sequence[int]
    ) -> dict[str, tuple[dict[int, Bucket], dict[int, HourBucket]]]:
        """Minute buckets and hourly rollups of several scopes, summed over the
        partitions, in one round trip."""
        sums: dict[str, tuple[dict[int, tuple[int, int, float]], dict[int, list[int]]]] = {scope: ({}, {}) for scope in scopes}
        if not scopes:
            return {}
        bucket_fields = [f"b:{scope}" for scope in scopes]

        def reads_of(tag: str) -> list[tuple[str, list[str]]]:
            return [(f"{tag}:m:{minute}", bucket_fields) for minute in minutes] + [(f"{tag}:h:{hour}", list(scopes)) for hour in hours]

        for _, values in await self._fields(reads_of):
            rows = iter(values)
            for minute in minutes:
                for scope in scopes:
                    bucket = _parse_bucket(next(rows))
                    if bucket is not None:
                        minute_sums = sums[scope][0]
                        old = minute_sums.get(minute, (0, 0, 0.0))
                        minute_sums[minute] = (old[0] + bucket[0], old[1] + bucket[1], old[2] + bucket[2])
            for hour in hours:
                for scope in scopes:
                    rollup = _parse_hour(next(rows))
                    if rollup is not None:
                        hour_sums = sums[scope][1]
                        old = hour_sums.get(hour, [0, 0, 0])
                        hour_sums[hour] = [old[0] + rollup[0], old[1] + rollup[1], old[2] | rollup[2]]
        return {
            scope: (
                {m: Bucket(*v) for m, v in minute_sums.items()},
                {h: HourBucket(n, neg, live.bit_count()) for h, (n, neg, live) in hour_sums.items()},
            )
            for scope, (minute_sums, hour_sums) in sums.items()
        }

    async def counted(self, post_ids: Sequence[str]) -> list[bool]:
        """Whether each post id was counted within the last ``dedup_window_s`` (in any
        partition), in order."""
        now_ms = int(time.time() * 1000)
        found = [False] * len(post_ids)
        hashes = [id_hash(post_id) for post_id in post_ids]
        for partition in await self.partitions():
            window = await self.dedup_window(partition, now_ms)
            found = [f or known for f, known in zip(found, window.contains(hashes, now_ms))]
        return found

    async def _posts(self, post_ids: Sequence[str]) -> dict[str, dict | None]:
        partitions = await self.partitions()
        found: dict[str, dict | None] = {post_id: None for post_id in post_ids}
        if not partitions or not post_ids:
            return found
        pipe = self.redis.pipeline(transaction=False)
        for partition in partitions:
            for post_id in post_ids:
                pipe.get(f"{self._tag(partition)}:post:{post_id}")
        rows = iter(await pipe.execute())
        for _ in partitions:
            for post_id in post_ids:
                raw = next(rows)
                if raw is not None:
                    found[post_id] = orjson.loads(raw)
        return found

    async def shown(self, post_ids: Sequence[str]) -> dict[str, ShownPost | None]:
        """What was kept of these example posts (None: never an example candidate, or
        older than the counters' retention)."""
        return {
            post_id: None if data is None or not data.get("text") else ShownPost(data["text"], data.get("url"))
            for post_id, data in (await self._posts(post_ids)).items()
        }

    async def prediction(self, post_id: str) -> Prediction | None:
        """What the model said about a post (None: not kept, or older than the counters'
        retention). By default predictions are kept for the posts people see, the alerts'
        examples: one per post would cost more Redis than the counts themselves
        (``keep_predictions="all"`` keeps them all)."""
        return (await self.predictions([post_id]))[post_id]

    async def predictions(self, post_ids: Sequence[str]) -> dict[str, Prediction | None]:
        return {
            post_id: None if data is None or "score" not in data else Prediction(float(data["score"]), bool(data["negative"]), str(data.get("model", "")))
            for post_id, data in (await self._posts(post_ids)).items()
        }
