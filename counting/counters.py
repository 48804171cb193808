"""Windowed counters in Redis, partitioned like the stream: every key a batch writes
carries the hash tag of the Kafka partition its posts came from (``{P:p<N>}``), so one
Lua script per partition counts a batch atomically on a single Redis Cluster slot, and
the partitions spread over the cluster's shards. Readers sum the partitions.

Per partition and (scope, event-time minute): a hash of the post count ``n``, the
negative count ``neg`` and the score sum ``s``; a sorted set of the terms of that
minute's negative posts (the alert drivers); the ids of its most confidently negative
posts (alert examples). Per partition and (scope, hour): a rollup of ``n`` and ``neg`` kept for weeks,
and a bitmap of the minutes that had any post (the live minutes baselines divide by).

Exactly once without a key per post:

- The partition's last counted offset is stored by the same script that adds the
  counts, so a redelivered message (a worker killed mid-batch, a rebalance, a retry
  after a lost reply) is recognised by its offset and skipped; on assignment the worker
  resumes from that offset (``stream.assignment``), which also recounts what a Redis that
  lost its last writes forgot. A worker that finds Redis's offset behind the one it
  counted through itself stops (``CountsLost``) so that its restart does that.
- The same post id arriving twice from the feed within ``BADBUZZ_DEDUP_WINDOW_S`` is
  counted once: the partition's only consumer keeps the window's id hashes in memory
  (``counting.dedup``) and drops known ids before the script runs; the script stores each
  batch's hashes (an integer set, about 8 bytes a post, for the window), from which a
  worker taking the partition over rebuilds the window. When the stored offset shows
  another worker counted the partition since, the script refuses the batch and the
  caller reloads the window first.

What the console shows of an example post (masked text, link) and what the model said
about it are kept beside it (``T:post:<id>``) for the counters' retention.

Key layout (``T`` is ``{P:p<partition>}``, ``P`` is ``BADBUZZ_REDIS_PREFIX``):
``T:o`` (hash: ``o`` last counted offset, ``t`` newest counted event ms),
``T:di`` (the dedup window's batches by arrival), ``T:d:<batch>:<chunk>`` (their id
hashes), ``T:b:<scope>:<minute>``,
``T:t:<scope>:<minute>``, ``T:x:<scope>:<minute>``, ``T:h:<scope>:<hour>``,
``T:m:<scope>:<hour>``, ``T:post:<id>``; ``P:partitions`` (the partitions ever
counted, for readers)."""
from __future__ import annotations

import time
import uuid
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson
import redis.asyncio as aioredis

from counting.dedup import DedupWindow, id_hash
from counting.windows import Bucket, WindowStats, aggregate, window_minutes

# Redis is shared by every worker, so it does nearly nothing per post: the caller (the
# partition's only consumer) has already dropped the ids in its dedup window and sends
# the batch's sums per (scope, minute), which the script writes with one command per key
# and field, and the batch's id hashes, stored with one SADD. When the stored offset says
# part of the batch was counted already, or that another worker counted the partition
# since, the script writes nothing and says so; the caller adjusts and calls again.
# Driver terms kept per (partition, scope, minute), and offered per batch (the batch's
# most frequent, ties broken by a hash of the term, not its spelling): small enough for
# Redis's compact sorted-set encoding and few arguments per script. The drivers of an
# alert are the terms frequent in its window; the long tail of words is what gets dropped.
TERMS_KEPT = 64
TERMS_OFFERED = 16

_COUNT_SCRIPT = """
local tag = ARGV[1]
local ttl = tonumber(ARGV[2])
local hour_ttl = tonumber(ARGV[3])
local examples = tonumber(ARGV[4])
local through = tonumber(ARGV[5])
local now = tonumber(ARGV[6])
local window = tonumber(ARGV[7])
local dedup_ttl = tonumber(ARGV[8])
local keep_all = ARGV[9] == '1'
local expected_through = tonumber(ARGV[10])
local first_offset = tonumber(ARGV[11])
local batch_key = ARGV[12]
local batch_newest = tonumber(ARGV[13])
local nposts = tonumber(ARGV[14])
local state = redis.call('HMGET', KEYS[1], 'o', 't')
local counted_through = tonumber(state[1] or '-1')
local newest = tonumber(state[2] or '0')
-- This worker counted up to expected_through itself: Redis has forgotten writes it
-- acknowledged (a failover ahead of replication, a restart without the last writes).
if counted_through < expected_through then return {-1, counted_through} end
-- Another worker counted the partition since (a rebalance): the caller's dedup window
-- misses its posts. It reloads the window and calls again.
if expected_through >= 0 and counted_through > expected_through then return {-3, counted_through} end
-- Some of these posts are counted already (redelivered): the caller drops them and calls again.
if first_offset >= 0 and first_offset <= counted_through then return {-2, counted_through} end

-- The batch's id hashes, for a worker that takes the partition over to rebuild the window.
local first_post = 15
if nposts > 0 then
  for c = 0, nposts - 1, @CHUNK@ do
    local last = math.min(c + @CHUNK@, nposts) - 1
    local key = tag .. ':d:' .. batch_key .. ':' .. c
    redis.call('SADD', key, unpack(ARGV, first_post + c, first_post + last))
    redis.call('EXPIRE', key, dedup_ttl)
    redis.call('ZADD', KEYS[2], now, batch_key .. ':' .. c)
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window - 60000)
  redis.call('EXPIRE', KEYS[2], dedup_ttl)
end

-- The sums per (scope, minute), made by the caller.
local i = first_post + nposts
local nbuckets = tonumber(ARGV[i])
i = i + 1
for _ = 1, nbuckets do
  local scope, minute = ARGV[i], tonumber(ARGV[i + 1])
  local n, neg = tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  local hour = math.floor(minute / 60)
  local key = tag .. ':b:' .. scope .. ':' .. minute
  if redis.call('HINCRBY', key, 'n', n) == n then redis.call('EXPIRE', key, ttl) end
  if neg > 0 then redis.call('HINCRBY', key, 'neg', neg) end
  redis.call('HINCRBYFLOAT', key, 's', ARGV[i + 4])
  local hkey = tag .. ':h:' .. scope .. ':' .. hour
  if redis.call('HINCRBY', hkey, 'n', n) == n then redis.call('EXPIRE', hkey, hour_ttl) end
  if neg > 0 then redis.call('HINCRBY', hkey, 'neg', neg) end
  local mkey = tag .. ':m:' .. scope .. ':' .. hour
  if redis.call('SETBIT', mkey, minute % 60, 1) == 0 then redis.call('EXPIRE', mkey, hour_ttl) end
  local nterms = tonumber(ARGV[i + 5])
  i = i + 6
  if nterms > 0 then
    -- Added in one union rather than a command per term; the minute keeps its most
    -- frequent terms only, small enough for Redis's compact encoding.
    local tkey = tag .. ':t:' .. scope .. ':' .. minute
    local incoming = tag .. ':t:incoming'
    redis.call('ZADD', incoming, unpack(ARGV, i, i + 2 * nterms - 1))
    redis.call('ZUNIONSTORE', tkey, 2, tkey, incoming)
    redis.call('DEL', incoming)
    redis.call('ZREMRANGEBYRANK', tkey, 0, -(@TERMS_KEPT@ + 1))
    redis.call('EXPIRE', tkey, ttl)
    i = i + 2 * nterms
  end
  local ncandidates = tonumber(ARGV[i])
  i = i + 1
  local xkey = tag .. ':x:' .. scope .. ':' .. minute
  if ncandidates > 0 and redis.call('ZCARD', xkey) >= examples then
    -- Most batches of a busy minute have nothing better than the five kept: then the
    -- examples are left alone (the caller offers its best first; a tie may still enter).
    local floor = redis.call('ZRANGE', xkey, 0, 0, 'WITHSCORES')[2]
    if tonumber(ARGV[i]) < tonumber(floor) then
      i = i + 3 * ncandidates
      ncandidates = 0
    end
  end
  if ncandidates > 0 then
    -- The caller offers the batch's best (and every post tied with the last of them:
    -- Redis breaks ties by member, so it decides those).
    local offered = {}
    for c = 0, ncandidates - 1 do
      redis.call('ZADD', xkey, ARGV[i + 3 * c], ARGV[i + 3 * c + 1])
      offered[ARGV[i + 3 * c + 1]] = ARGV[i + 3 * c + 2]
    end
    i = i + 3 * ncandidates
    redis.call('ZREMRANGEBYRANK', xkey, 0, -(examples + 1))
    redis.call('EXPIRE', xkey, ttl)
    -- What the console shows is kept for the examples that stayed, not every tie offered.
    if not keep_all then
      for _, member in ipairs(redis.call('ZRANGE', xkey, 0, -1)) do
        local shown = offered[member]
        if shown and shown ~= '' then redis.call('SET', tag .. ':post:' .. member, shown, 'EX', ttl) end
      end
    end
  end
end
if keep_all then
  for p = 0, nposts - 1 do redis.call('SET', tag .. ':post:' .. ARGV[i + 2 * p], ARGV[i + 2 * p + 1], 'EX', ttl) end
end

local newest_now = math.max(newest, nposts > 0 and batch_newest or 0)
if through > counted_through or newest_now > newest then
  redis.call('HSET', KEYS[1], 'o', tostring(math.max(through, counted_through)), 't', tostring(newest_now))
  -- A partition idle for the rollups' retention resumes at Kafka's committed offset.
  redis.call('EXPIRE', KEYS[1], hour_ttl)
end
return {nposts}
""".replace("@CHUNK@", "400").replace("@TERMS_KEPT@", str(TERMS_KEPT))
# Redis keeps a set of integers compact (8 bytes each) up to ``set-max-intset-entries``
# (512 by default): a batch's hashes go in sets of at most 400.


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


# Hourly rollups outlive the minute buckets: five weeks covers a four-week lookback at
# the same hour of week.
HOUR_TTL_S = 35 * 24 * 3600
EXAMPLES_PER_MINUTE = 5
DEDUP_WINDOW_S = 600


def example_candidates(posts: Sequence[ScoredPost], k: int) -> set[int]:
    """Positions of the posts the count script may add to the examples: per scope and
    minute, the batch's ``k`` highest-scoring negative posts and every post tied with the
    last of them (the script's own choice, made before it knows which posts are new)."""
    groups: dict[tuple[str, int], list[tuple[float, int]]] = {}
    for position, post in enumerate(posts):
        if post.negative:
            minute = post.event_ms // 60_000
            for scope in post.scopes:
                groups.setdefault((scope, minute), []).append((post.score, position))
    chosen: set[int] = set()
    for entries in groups.values():
        if len(entries) > k:
            entries.sort(reverse=True)
            cut = entries[k - 1][0]
            entries = [e for e in entries if e[0] >= cut]
        chosen.update(position for _, position in entries)
    return chosen


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
        self._registered: set[int] = set()
        # Per partition counted here: its dedup window, and the offset counted through as
        # far as this process knows (-1: not from Kafka, or nothing counted yet).
        self._windows: dict[int, tuple[DedupWindow, int]] = {}

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
        ``posts``, ascending. A post is skipped when its offset is at or below the
        partition's last counted offset, or when its id was counted within the dedup
        window. ``through_offset`` (the batch's last offset in the partition, dead letters
        included) is stored as counted with the counts. ``arrived_ms`` is the clock of the
        dedup window (the messages' Kafka timestamps; now by default).
        ``expected_through``: the offset this caller itself last counted in the partition;
        if Redis's is older, Redis lost those writes and ``CountsLost`` is raised with
        nothing counted. ``model_version`` is kept with the example posts' predictions;
        ``shown(position)`` gives what the console may show of a post: it is asked only
        for the few posts that can become alert examples, and kept (``T:post:<id>``) for
        those that do."""
        if not posts and through_offset < 0:
            return []
        if partition not in self._registered:
            pipe = self.redis.pipeline(transaction=False)
            pipe.sadd(f"{self.prefix}:partitions", partition)
            pipe.expire(f"{self.prefix}:partitions", self.hour_ttl_s)
            await pipe.execute()
            self._registered.add(partition)
        tag = self._tag(partition)
        now_ms = int(time.time() * 1000) if arrived_ms is None else arrived_ms
        if partition not in self._windows:
            self._windows[partition] = (await self.dedup_window(partition, now_ms), expected_through)
        window, known_through = self._windows[partition]
        expected = max(expected_through, known_through)
        hashes = [id_hash(post.id) for post in posts]
        remaining = [i for i, new in enumerate(window.fresh(hashes, now_ms)) if new]
        while True:
            offsets = [posts[i].offset for i in remaining if posts[i].offset >= 0]
            args: list[object] = [
                tag, self.ttl_s, self.hour_ttl_s, self.examples_per_minute, through_offset, now_ms, self.dedup_window_s * 1000,
                self.dedup_window_s + 120, 1 if self.keep_all_predictions else 0, expected, min(offsets, default=-1),
                through_offset if through_offset >= 0 else uuid.uuid4().hex[:12], max((posts[i].event_ms for i in remaining), default=0),
                len(remaining),
            ]
            args += [hashes[i] for i in remaining]
            args += self._sums([posts[i] for i in remaining], model_version, shown, remaining)
            reply = [int(v) for v in await self._count(keys=[f"{tag}:o", f"{tag}:di"], args=args)]
            if reply[0] == -1:
                raise CountsLost(partition, reply[1], expected)
            if reply[0] == -3:
                # Another worker counted here since: its posts are in Redis's copy only.
                window = await self.dedup_window(partition, now_ms)
                expected = reply[1]
                remaining = [i for i, new in zip(remaining, window.fresh([hashes[i] for i in remaining], now_ms)) if new]
            elif reply[0] == -2:
                expected = max(expected, reply[1]) if expected >= 0 else expected
                remaining = [i for i in remaining if posts[i].offset > reply[1] or posts[i].offset < 0]
            else:
                window.add((hashes[i] for i in remaining), now_ms)
                if through_offset >= 0:
                    expected = max(expected, through_offset)
                self._windows[partition] = (window, expected)
                return remaining

    async def dedup_window(self, partition: int, now_ms: int) -> DedupWindow:
        """The partition's dedup window as Redis has it (what a worker taking the
        partition over starts from)."""
        tag = self._tag(partition)
        window = DedupWindow(self.dedup_window_s * 1000)
        batches = await self.redis.zrangebyscore(f"{tag}:di", now_ms - self.dedup_window_s * 1000, "+inf", withscores=True)
        if batches:
            pipe = self.redis.pipeline(transaction=False)
            for member, _ in batches:
                pipe.smembers(f"{tag}:d:{member.decode()}")
            for (_, arrived), members in zip(batches, await pipe.execute()):
                window.add((int(m) for m in members), int(arrived))
        return window

    def _sums(
        self, posts: Sequence[ScoredPost], model_version: str, shown: Callable[[int], ShownPost] | None, positions: Sequence[int]
    ) -> list[object]:
        """The script's arguments after the posts: per (scope, minute) the count, negatives,
        score sum, term counts and example candidates; then, when every prediction is kept,
        each post's."""
        groups: dict[tuple[str, int], list] = {}
        for post in posts:
            minute = post.event_ms // 60_000
            for scope in post.scopes:
                group = groups.get((scope, minute))
                if group is None:
                    group = groups[(scope, minute)] = [0, 0, 0.0, {}]
                group[0] += 1
                group[2] += post.score
                if post.negative:
                    group[1] += 1
                    terms = group[3]
                    for term in post.terms:
                        terms[term] = terms.get(term, 0) + 1
        candidates = example_candidates(posts, self.examples_per_minute) if self.examples_per_minute > 0 else set()
        offered: dict[tuple[str, int], list[tuple[str, str, bytes]]] = {}
        for k in sorted(candidates):
            post = posts[k]
            seen = shown(positions[k]) if shown is not None else ShownPost("")
            kept = orjson.dumps({"text": seen.text, "url": seen.url, "score": post.score, "negative": post.negative, "model": model_version})
            for scope in post.scopes:
                offered.setdefault((scope, post.event_ms // 60_000), []).append((repr(post.score), post.id, kept))
        args: list[object] = [len(groups)]
        for (scope, minute), (n, neg, score_sum, terms) in groups.items():
            offered_terms = sorted(terms.items(), key=lambda tc: (-tc[1], zlib.crc32(tc[0].encode())))[:TERMS_OFFERED]
            args += [scope, minute, n, neg, repr(score_sum), len(offered_terms)]
            for term, count in offered_terms:
                args += [count, term]
            chosen = offered.get((scope, minute), [])
            args.append(len(chosen))
            for score, post_id, kept in sorted(chosen, key=lambda c: -float(c[0])):
                args += [score, post_id, kept]
        if self.keep_all_predictions:
            for post in posts:
                args += [post.id, orjson.dumps({"score": post.score, "negative": post.negative, "model": model_version})]
        return args

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

    async def _sorted_sets(self, kind: str, scope: str, minutes: range) -> list[list[tuple[bytes, float]]]:
        partitions = await self.partitions()
        pipe = self.redis.pipeline(transaction=False)
        for partition in partitions:
            tag = self._tag(partition)
            for minute in minutes:
                pipe.zrange(f"{tag}:{kind}:{scope}:{minute}", 0, -1, withscores=True)
        return await pipe.execute() if partitions and minutes else []

    async def term_counts(self, scope: str, minutes: range) -> dict[str, int]:
        """Term counts of the negative posts in these minutes (each post counts a term once)."""
        totals: dict[str, int] = {}
        for entries in await self._sorted_sets("t", scope, minutes):
            for term, count in entries:
                totals[term.decode()] = totals.get(term.decode(), 0) + int(count)
        return totals

    async def examples(self, scope: str, minutes: range, k: int) -> list[str]:
        """Ids of the most confidently negative posts in these minutes (ties by id)."""
        if k <= 0:
            return []
        best: dict[str, float] = {}
        for entries in await self._sorted_sets("x", scope, minutes):
            for post_id, score in entries:
                key = post_id.decode()
                best[key] = max(best.get(key, score), score)
        ranked = sorted(best.items(), key=lambda ps: (-ps[1], ps[0]))
        return [post_id for post_id, _ in ranked[:k]]

    async def snapshot(
        self, scopes: Sequence[str], minutes: range, hours: Sequence[int]
    ) -> dict[str, tuple[dict[int, Bucket], dict[int, HourBucket]]]:
        """Minute buckets and hourly rollups of several scopes, summed over the
        partitions, in one round trip."""
        partitions = await self.partitions()
        pipe = self.redis.pipeline(transaction=False)
        for partition in partitions:
            tag = self._tag(partition)
            for scope in scopes:
                for minute in minutes:
                    pipe.hmget(f"{tag}:b:{scope}:{minute}", "n", "neg", "s")
                for hour in hours:
                    pipe.hmget(f"{tag}:h:{scope}:{hour}", "n", "neg")
                    pipe.get(f"{tag}:m:{scope}:{hour}")
        rows = iter(await pipe.execute() if partitions and (minutes or hours) else [])
        sums = {scope: ({}, {}, {}) for scope in scopes}
        for _ in partitions:
            for scope in scopes:
                minute_sums, hour_sums, live = sums[scope]
                for minute in minutes:
                    n, neg, score_sum = next(rows)
                    if n is not None:
                        old = minute_sums.get(minute, (0, 0, 0.0))
                        minute_sums[minute] = (old[0] + int(n), old[1] + int(neg or 0), old[2] + float(score_sum or 0.0))
                for hour in hours:
                    n, neg = next(rows)
                    bits = next(rows)
                    if n is not None:
                        old = hour_sums.get(hour, (0, 0))
                        hour_sums[hour] = (old[0] + int(n), old[1] + int(neg or 0))
                    if bits:
                        # SETBIT counts from the first byte's top bit: align before ORing.
                        live[hour] = live.get(hour, 0) | int.from_bytes(bits.ljust(8, b"\0"), "big")
        return {
            scope: (
                {m: Bucket(*v) for m, v in minute_sums.items()},
                {h: HourBucket(n, neg, live.get(h, 0).bit_count()) for h, (n, neg) in hour_sums.items()},
            )
            for scope, (minute_sums, hour_sums, live) in sums.items()
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
