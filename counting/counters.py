"""Windowed counters in Redis, partitioned like the stream: every key a batch writes
carries the hash tag of the Kafka partition its posts came from (``{P:p<N>}``), so one
Lua script per partition counts a batch atomically on a single Redis Cluster slot, and
the partitions spread over the cluster's shards. Readers sum the partitions.

Per partition and (scope, event-time minute): a hash of the post count ``n``, the
negative count ``neg`` and the score sum ``s``; a sorted set of the terms of that
minute's negative posts (the alert drivers); the ids of its most confidently negative
posts (alert examples). Per (scope, hour): a rollup of ``n`` and ``neg`` kept for weeks,
and a bitmap of the minutes that had any post (the live minutes baselines divide by).

Exactly once without a key per post:

- The partition's last counted offset is stored by the same script that adds the
  counts, so a redelivered message (a worker killed mid-batch, a rebalance, a retry
  after a lost reply) is recognised by its offset and skipped; on assignment the worker
  resumes from that offset (``stream.offsets``), which also recounts what a Redis that
  lost its last writes forgot.
- The same post id arriving twice from the feed within ``BADBUZZ_DEDUP_WINDOW_S`` is
  counted once: the script keeps a 63-bit hash of each id in small integer sets
  (Redis's compact intset encoding, about 8 bytes a post), grouped in generations that
  close when they are a window old or full; a generation is dropped once its newest id
  is older than the window.

What the console shows of an example post (masked text, link) and what the model said
about it are kept beside it (``T:post:<id>``) for the counters' retention.

Key layout (``T`` is ``{P:p<partition>}``, ``P`` is ``BADBUZZ_REDIS_PREFIX``):
``T:o`` (hash: ``o`` last counted offset, ``t`` newest counted event ms),
``T:d`` (dedup generations), ``T:d:<generation>:<bucket>``, ``T:b:<scope>:<minute>``,
``T:t:<scope>:<minute>``, ``T:x:<scope>:<minute>``, ``T:h:<scope>:<hour>``,
``T:m:<scope>:<hour>``, ``T:post:<id>``; ``P:partitions`` (the partitions ever
counted, for readers)."""
from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson
import redis.asyncio as aioredis

from counting.windows import Bucket, WindowStats, aggregate, window_minutes

# New posts are first gathered per key in Lua tables, then written with one command per
# key and field: a batch mostly shares a minute, and a command per post, scope and term
# made Redis the second-largest CPU cost of the stream.
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
local state = redis.call('HMGET', KEYS[1], 'o', 't')
local counted_through = tonumber(state[1] or '-1')
local newest = tonumber(state[2] or '0')
-- This worker counted up to expected_through itself: Redis has forgotten writes it
-- acknowledged (a failover ahead of replication, a restart without the last writes).
if counted_through < expected_through then return {-1, counted_through} end

-- Dedup generations, oldest first: sequence, opened at, newest id at, buckets, ids.
local gens, live = {}, {}
local raw = redis.call('GET', KEYS[2])
if raw then
  for seq, start, last, b, c in string.gmatch(raw, '(%d+),(%d+),(%d+),(%d+),(%d+);') do
    gens[#gens + 1] = {seq = tonumber(seq), start = tonumber(start), last = tonumber(last), b = tonumber(b), c = tonumber(c)}
  end
end
for _, g in ipairs(gens) do
  if g.last >= now - window then live[#live + 1] = g end
end
local dedup_changed = #live ~= #gens
local function open(b, seq)
  local g = {seq = seq, start = now, last = now, b = b, c = 0}
  live[#live + 1] = g
  dedup_changed = true
  return g
end
local cur = live[#live]
if not cur then
  cur = open(@INITIAL_BUCKETS@, gens[#gens] and gens[#gens].seq + 1 or 1)
elseif now - cur.start >= window then
  -- Sized for the rate the closing generation saw.
  local b = 1
  while b * @TARGET@ < cur.c do b = b * 2 end
  cur = open(b, cur.seq + 1)
end
local function seen(hid, hlo)
  for k = #live, 1, -1 do
    local g = live[k]
    if redis.call('SISMEMBER', tag .. ':d:' .. g.seq .. ':' .. (hlo % g.b), hid) == 1 then return true end
  end
  return false
end
local touched = {}
local function remember(hid, hlo)
  -- A full generation would leave the compact encoding: a new one, twice as wide.
  if cur.c >= cur.b * @CAPACITY@ then cur = open(cur.b * 2, cur.seq + 1) end
  local key = tag .. ':d:' .. cur.seq .. ':' .. (hlo % cur.b)
  redis.call('SADD', key, hid)
  cur.c = cur.c + 1
  if now > cur.last then cur.last = now end
  dedup_changed = true
  if not touched[key] then
    touched[key] = true
    redis.call('EXPIRE', key, dedup_ttl)
  end
end

local i = 11
local n = #ARGV
-- Positions (0-based) of the posts counted for the first time, in argument order.
local fresh = {}
local position = 0
local buckets, bucket_keys = {}, {}
local terms, examples_of = {}, {}
local max_event = newest
while i <= n do
  local offset = tonumber(ARGV[i])
  local post_id = ARGV[i + 1]
  local hid = ARGV[i + 2]
  local hlo = tonumber(ARGV[i + 3])
  local event_ms = tonumber(ARGV[i + 4])
  local score = ARGV[i + 5]
  local neg = ARGV[i + 6] == '1'
  local nscopes = tonumber(ARGV[i + 7])
  local first_scope = i + 8
  local nterms = tonumber(ARGV[first_scope + nscopes])
  local first_term = first_scope + nscopes + 1
  local shown = ARGV[first_term + nterms]
  local new = not (offset >= 0 and offset <= counted_through) and not seen(hid, hlo)
  if new then
    remember(hid, hlo)
    fresh[#fresh + 1] = position
    if event_ms > max_event then max_event = event_ms end
    if keep_all then redis.call('SET', tag .. ':post:' .. post_id, shown, 'EX', ttl) end
    local minute = math.floor(event_ms / 60000)
    local hour = math.floor(minute / 60)
    for s = first_scope, first_scope + nscopes - 1 do
      local key = tag .. ':b:' .. ARGV[s] .. ':' .. minute
      local b = buckets[key]
      if not b then
        b = {n = 0, neg = 0, s = 0, hour = tag .. ':h:' .. ARGV[s] .. ':' .. hour, live = tag .. ':m:' .. ARGV[s] .. ':' .. hour, bit = minute % 60}
        buckets[key] = b
        bucket_keys[#bucket_keys + 1] = key
      end
      b.n = b.n + 1
      b.s = b.s + tonumber(score)
      if neg then
        b.neg = b.neg + 1
        if examples > 0 then
          local xkey = tag .. ':x:' .. ARGV[s] .. ':' .. minute
          local xs = examples_of[xkey]
          if not xs then xs = {}; examples_of[xkey] = xs end
          xs[#xs + 1] = {tonumber(score), score, post_id, shown}
        end
        if nterms > 0 then
          local tkey = tag .. ':t:' .. ARGV[s] .. ':' .. minute
          local ts = terms[tkey]
          if not ts then ts = {}; terms[tkey] = ts end
          for t = first_term, first_term + nterms - 1 do
            ts[ARGV[t]] = (ts[ARGV[t]] or 0) + 1
          end
        end
      end
    end
  end
  i = first_term + nterms + 1
  position = position + 1
end
for _, key in ipairs(bucket_keys) do
  local b = buckets[key]
  redis.call('HINCRBY', key, 'n', b.n)
  if b.neg > 0 then redis.call('HINCRBY', key, 'neg', b.neg) end
  redis.call('HINCRBYFLOAT', key, 's', b.s)
  redis.call('EXPIRE', key, ttl)
  if redis.call('HINCRBY', b.hour, 'n', b.n) == b.n then redis.call('EXPIRE', b.hour, hour_ttl) end
  if b.neg > 0 then redis.call('HINCRBY', b.hour, 'neg', b.neg) end
  if redis.call('SETBIT', b.live, b.bit, 1) == 0 then redis.call('EXPIRE', b.live, hour_ttl) end
end
local shown_kept = {}
for xkey, xs in pairs(examples_of) do
  -- Only the batch's best can survive the trim: add the top ones by score, with every
  -- post tied with the last of them (Redis breaks ties by member, so it decides those).
  table.sort(xs, function(a, b) return a[1] > b[1] end)
  for r, x in ipairs(xs) do
    if r > examples and x[1] < xs[examples][1] then break end
    redis.call('ZADD', xkey, x[2], x[3])
    if x[4] ~= '' and not keep_all and not shown_kept[x[3]] then
      redis.call('SET', tag .. ':post:' .. x[3], x[4], 'EX', ttl)
      shown_kept[x[3]] = true
    end
  end
  redis.call('ZREMRANGEBYRANK', xkey, 0, -(examples + 1))
  redis.call('EXPIRE', xkey, ttl)
end
for tkey, ts in pairs(terms) do
  for term, count in pairs(ts) do redis.call('ZINCRBY', tkey, count, term) end
  redis.call('EXPIRE', tkey, ttl)
end
if through > counted_through or max_event > newest then
  redis.call('HSET', KEYS[1], 'o', tostring(math.max(through, counted_through)), 't', tostring(max_event))
  -- A partition idle for the rollups' retention resumes at Kafka's committed offset.
  redis.call('EXPIRE', KEYS[1], hour_ttl)
end
if dedup_changed then
  local parts = {}
  for _, g in ipairs(live) do
    parts[#parts + 1] = string.format('%d,%d,%d,%d,%d;', g.seq, g.start, g.last, g.b, g.c)
  end
  redis.call('SET', KEYS[2], table.concat(parts), 'EX', dedup_ttl)
end
return fresh
""".replace("@INITIAL_BUCKETS@", "256").replace("@TARGET@", "256").replace("@CAPACITY@", "400")
# Redis keeps a set of integers compact (8 bytes each) up to ``set-max-intset-entries``
# (512 by default): generations aim at 256 ids per set and open a wider one at 400.


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


def id_hash(post_id: str) -> int:
    """A 63-bit hash of a post id: what the dedup window keeps (a positive int64, so
    Redis stores it in an intset). Two ids collide with odds of about n²/2⁶⁴ for n ids in
    one partition's window."""
    return int.from_bytes(hashlib.blake2b(post_id.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big") >> 1


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
        nothing counted. ``model_version``
        is kept with the example posts' predictions; ``shown(position)`` gives what the
        console may show of a post: it is asked only for the few posts that can become
        alert examples, and kept (``T:post:<id>``) for those that do."""
        if not posts and through_offset < 0:
            return []
        if partition not in self._registered:
            pipe = self.redis.pipeline(transaction=False)
            pipe.sadd(f"{self.prefix}:partitions", partition)
            pipe.expire(f"{self.prefix}:partitions", self.hour_ttl_s)
            await pipe.execute()
            self._registered.add(partition)
        candidates = example_candidates(posts, self.examples_per_minute) if self.examples_per_minute > 0 else set()
        tag = self._tag(partition)
        window_ms = self.dedup_window_s * 1000
        if arrived_ms is None:
            arrived_ms = int(time.time() * 1000)
        args: list[object] = [
            tag, self.ttl_s, self.hour_ttl_s, self.examples_per_minute, through_offset, arrived_ms, window_ms, 2 * self.dedup_window_s + 60,
            1 if self.keep_all_predictions else 0, expected_through,
        ]
        for position, post in enumerate(posts):
            hashed = id_hash(post.id)
            args += [post.offset, post.id, hashed, hashed & 0xFFFFF, post.event_ms, repr(post.score), 1 if post.negative else 0, len(post.scopes)]
            args += post.scopes
            args.append(len(post.terms))
            args += post.terms
            if position in candidates:
                seen = shown(position) if shown is not None else ShownPost("")
                args.append(orjson.dumps({"text": seen.text, "url": seen.url, "score": post.score, "negative": post.negative, "model": model_version}))
            elif self.keep_all_predictions:
                args.append(orjson.dumps({"score": post.score, "negative": post.negative, "model": model_version}))
            else:
                args.append("")
        fresh = [int(position) for position in await self._count(keys=[f"{tag}:o", f"{tag}:d"], args=args)]
        if fresh and fresh[0] < 0:
            raise CountsLost(partition, fresh[1], expected_through)
        return fresh

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
        """Whether each post id is in some partition's dedup window (counted within the
        last ``dedup_window_s``), in order."""
        partitions = await self.partitions()
        if not partitions or not post_ids:
            return [False] * len(post_ids)
        lookups: list[tuple[int, str]] = []
        pipe = self.redis.pipeline(transaction=False)
        for partition, generations in zip(partitions, await self._dedup_states(partitions)):
            for seq, b in generations:
                for position, post_id in enumerate(post_ids):
                    hashed = id_hash(post_id)
                    pipe.sismember(f"{self._tag(partition)}:d:{seq}:{(hashed & 0xFFFFF) % b}", hashed)
                    lookups.append((position, post_id))
        found = [False] * len(post_ids)
        for (position, _), hit in zip(lookups, await pipe.execute() if lookups else []):
            found[position] = found[position] or bool(hit)
        return found

    async def _dedup_states(self, partitions: Sequence[int]) -> list[list[tuple[int, int]]]:
        """Per partition, its live dedup generations as (sequence, buckets)."""
        pipe = self.redis.pipeline(transaction=False)
        for partition in partitions:
            pipe.get(f"{self._tag(partition)}:d")
        out = []
        for raw in await pipe.execute():
            entries = []
            for part in (raw or b"").decode().split(";"):
                if part:
                    seq, _start, _last, buckets, _count = (int(v) for v in part.split(","))
                    entries.append((seq, buckets))
            out.append(entries)
        return out

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
