"""Windowed counters in Redis: one hash per (scope, event-time minute) holding the post
count ``n``, the negative count ``neg`` and the score sum ``s``, plus a sorted set of the
terms of that minute's negative posts (the alert drivers).

Counting is idempotent per post id: one Lua script marks the id seen and increments the
buckets atomically, so a redelivered post (at-least-once consumption, a worker killed
mid-batch, a duplicate in the feed) never counts twice and a crash never leaves a post
marked seen but uncounted. Every key carries a TTL so Redis does not grow without bound.

The same script keeps what escalation needs beyond the minute buckets: an hourly rollup
per scope (``n``, ``neg`` and ``m``, the minutes of that hour with any post) kept for
weeks so baselines can look at the same hour in earlier weeks; the ids of each minute's
most confidently negative posts (alert examples) and, for those only, what the console
shows of them (the masked text and link the caller gives, ``P:post:<id>``); and, as the
value of the seen-key, the post's prediction (``score|negative|model version``) so
feedback on a post id can be checked against what the model said.

Key layout (``P`` is ``BADBUZZ_REDIS_PREFIX``): ``P:seen:<id>``, ``P:b:<scope>:<minute>``,
``P:t:<scope>:<minute>``, ``P:h:<scope>:<hour>``, ``P:x:<scope>:<minute>``,
``P:post:<id>``, ``P:wm`` (newest counted event time, ms)."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson
import redis.asyncio as aioredis

from counting.windows import Bucket, WindowStats, aggregate, window_minutes

# New posts are first gathered per key in Lua tables, then written with one command per
# key and field: a batch of 256 posts mostly shares a minute, and a command per post,
# scope and term made Redis the second-largest CPU cost of the stream.
_COUNT_SCRIPT = """
local prefix = ARGV[1]
local ttl = tonumber(ARGV[2])
local model = ARGV[4]
local hour_ttl = tonumber(ARGV[5])
local examples = tonumber(ARGV[6])
local i = 7
local n = #ARGV
-- Positions (0-based) of the posts counted for the first time, in argument order.
local fresh = {}
local position = 0
local buckets, bucket_keys = {}, {}
local terms, examples_of = {}, {}
while i <= n do
  local minute = ARGV[i + 1]
  local score = ARGV[i + 2]
  local neg = ARGV[i + 3] == '1'
  local nscopes = tonumber(ARGV[i + 4])
  local first_scope = i + 5
  local nterms = tonumber(ARGV[first_scope + nscopes])
  local first_term = first_scope + nscopes + 1
  local shown = ARGV[first_term + nterms]
  local prediction = score .. '|' .. ARGV[i + 3] .. '|' .. model
  if redis.call('SET', prefix .. ':seen:' .. ARGV[i], prediction, 'NX', 'EX', ttl) then
    fresh[#fresh + 1] = position
    local hour = math.floor(tonumber(minute) / 60)
    for s = first_scope, first_scope + nscopes - 1 do
      local key = prefix .. ':b:' .. ARGV[s] .. ':' .. minute
      local b = buckets[key]
      if not b then
        b = {n = 0, neg = 0, s = 0, hour = prefix .. ':h:' .. ARGV[s] .. ':' .. hour}
        buckets[key] = b
        bucket_keys[#bucket_keys + 1] = key
      end
      b.n = b.n + 1
      b.s = b.s + tonumber(score)
      if neg then
        b.neg = b.neg + 1
        if examples > 0 then
          local xkey = prefix .. ':x:' .. ARGV[s] .. ':' .. minute
          local xs = examples_of[xkey]
          if not xs then xs = {}; examples_of[xkey] = xs end
          xs[#xs + 1] = {tonumber(score), score, ARGV[i], shown}
        end
        if nterms > 0 then
          local tkey = prefix .. ':t:' .. ARGV[s] .. ':' .. minute
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
  local minute_total = redis.call('HINCRBY', key, 'n', b.n)
  if b.neg > 0 then redis.call('HINCRBY', key, 'neg', b.neg) end
  redis.call('HINCRBYFLOAT', key, 's', b.s)
  redis.call('EXPIRE', key, ttl)
  if redis.call('HINCRBY', b.hour, 'n', b.n) == b.n then redis.call('EXPIRE', b.hour, hour_ttl) end
  if b.neg > 0 then redis.call('HINCRBY', b.hour, 'neg', b.neg) end
  -- The minute had no post before this batch: one more live minute in its hour.
  if minute_total == b.n then redis.call('HINCRBY', b.hour, 'm', 1) end
end
local shown_kept = {}
for xkey, xs in pairs(examples_of) do
  -- Only the batch's best can survive the trim: add the top ones by score, with every
  -- post tied with the last of them (Redis breaks ties by member, so it decides those).
  table.sort(xs, function(a, b) return a[1] > b[1] end)
  for r, x in ipairs(xs) do
    if r > examples and x[1] < xs[examples][1] then break end
    redis.call('ZADD', xkey, x[2], x[3])
    if x[4] ~= '' and not shown_kept[x[3]] then
      redis.call('SET', prefix .. ':post:' .. x[3], x[4], 'EX', ttl)
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
local wm_key = prefix .. ':wm'
if #fresh > 0 and tonumber(ARGV[3]) > tonumber(redis.call('GET', wm_key) or '0') then
  redis.call('SET', wm_key, ARGV[3])
end
return fresh
"""


@dataclass(frozen=True, slots=True)
class ScoredPost:
    id: str
    event_ms: int
    score: float
    negative: bool
    scopes: Sequence[str]
    terms: Sequence[str]


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


class Counters:
    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        prefix: str,
        ttl_s: int,
        hour_ttl_s: int = HOUR_TTL_S,
        examples_per_minute: int = EXAMPLES_PER_MINUTE,
    ):
        self.redis = redis
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.hour_ttl_s = max(hour_ttl_s, ttl_s)
        self.examples_per_minute = examples_per_minute
        self._count = redis.register_script(_COUNT_SCRIPT)

    async def count(self, posts: Sequence[ScoredPost], *, model_version: str = "") -> int:
        """Count posts not seen before; return how many were new."""
        return len(await self.count_new(posts, model_version=model_version))

    async def count_new(
        self, posts: Sequence[ScoredPost], *, model_version: str = "", shown: Callable[[int], ShownPost] | None = None
    ) -> list[int]:
        """Count posts not seen before; return their positions in ``posts``, ascending.
        ``model_version`` is stored with each post's prediction. ``shown(position)``
        gives what the console may show of a post: it is asked only for the few posts
        that can become alert examples, and kept (``P:post:<id>``) for those that do."""
        if not posts:
            return []
        candidates = example_candidates(posts, self.examples_per_minute) if shown is not None and self.examples_per_minute > 0 else set()
        args: list[object] = [
            self.prefix, self.ttl_s, max(p.event_ms for p in posts), model_version, self.hour_ttl_s, self.examples_per_minute
        ]
        for position, post in enumerate(posts):
            args += [post.id, post.event_ms // 60_000, repr(post.score), 1 if post.negative else 0, len(post.scopes)]
            args += post.scopes
            args.append(len(post.terms))
            args += post.terms
            if position in candidates:
                seen = shown(position)
                args.append(orjson.dumps({"text": seen.text, "url": seen.url}))
            else:
                args.append("")
        return [int(position) for position in await self._count(args=args)]

    async def watermark_ms(self) -> int:
        value = await self.redis.get(f"{self.prefix}:wm")
        return int(value) if value else 0

    async def buckets(self, scope: str, minutes: range) -> dict[int, Bucket]:
        pipe = self.redis.pipeline(transaction=False)
        for minute in minutes:
            pipe.hmget(f"{self.prefix}:b:{scope}:{minute}", "n", "neg", "s")
        rows = await pipe.execute()
        return {
            minute: Bucket(int(n), int(neg or 0), float(s or 0.0))
            for minute, (n, neg, s) in zip(minutes, rows)
            if n is not None
        }

    async def window(self, scope: str, end_minute: int, length_min: int, *, offset_min: int = 0) -> WindowStats:
        minutes = window_minutes(end_minute, length_min, offset_min=offset_min)
        return aggregate(await self.buckets(scope, minutes), minutes)

    async def windows(self, scope: str, end_minute: int, lengths: Sequence[int]) -> dict[int, WindowStats]:
        """Several trailing windows from one read of the longest."""
        longest = window_minutes(end_minute, max(lengths))
        buckets = await self.buckets(scope, longest)
        return {length: aggregate(buckets, window_minutes(end_minute, length)) for length in lengths}

    async def term_counts(self, scope: str, minutes: range) -> dict[str, int]:
        """Term counts of the negative posts in these minutes (each post counts a term once)."""
        keys = [f"{self.prefix}:t:{scope}:{m}" for m in minutes]
        if not keys:
            return {}
        return {term.decode(): int(score) for term, score in await self.redis.zunion(keys, withscores=True)}

    async def examples(self, scope: str, minutes: range, k: int) -> list[str]:
        """Ids of the most confidently negative posts in these minutes (ties by id)."""
        keys = [f"{self.prefix}:x:{scope}:{m}" for m in minutes]
        if not keys or k <= 0:
            return []
        merged = await self.redis.zunion(keys, withscores=True, aggregate="MAX")
        ranked = sorted(((post_id.decode(), score) for post_id, score in merged), key=lambda ps: (-ps[1], ps[0]))
        return [post_id for post_id, _ in ranked[:k]]

    async def snapshot(
        self, scopes: Sequence[str], minutes: range, hours: Sequence[int]
    ) -> dict[str, tuple[dict[int, Bucket], dict[int, HourBucket]]]:
        """Minute buckets and hourly rollups of several scopes in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for scope in scopes:
            for minute in minutes:
                pipe.hmget(f"{self.prefix}:b:{scope}:{minute}", "n", "neg", "s")
            for hour in hours:
                pipe.hmget(f"{self.prefix}:h:{scope}:{hour}", "n", "neg", "m")
        rows = iter(await pipe.execute())
        out = {}
        for scope in scopes:
            minute_rows = [next(rows) for _ in minutes]
            hour_rows = [next(rows) for _ in hours]
            out[scope] = (
                {m: Bucket(int(n), int(neg or 0), float(s or 0.0)) for m, (n, neg, s) in zip(minutes, minute_rows) if n is not None},
                {h: HourBucket(int(n), int(neg or 0), int(live or 0)) for h, (n, neg, live) in zip(hours, hour_rows) if n is not None},
            )
        return out

    async def counted(self, post_ids: Sequence[str]) -> list[bool]:
        """Whether each post has been counted (and not expired since), in order."""
        pipe = self.redis.pipeline(transaction=False)
        for post_id in post_ids:
            pipe.exists(f"{self.prefix}:seen:{post_id}")
        return [bool(seen) for seen in await pipe.execute()]

    async def shown(self, post_ids: Sequence[str]) -> dict[str, ShownPost | None]:
        """What was kept of these example posts (None: never an example candidate, or
        older than the counters' retention)."""
        raws = await self.redis.mget([f"{self.prefix}:post:{post_id}" for post_id in post_ids]) if post_ids else []
        out: dict[str, ShownPost | None] = {}
        for post_id, raw in zip(post_ids, raws):
            data = None if raw is None else orjson.loads(raw)
            out[post_id] = None if data is None else ShownPost(data["text"], data.get("url"))
        return out

    async def prediction(self, post_id: str) -> Prediction | None:
        """What the model said about a counted post (None: not seen, expired, or counted
        before predictions were kept)."""
        value = await self.redis.get(f"{self.prefix}:seen:{post_id}")
        if value is None:
            return None
        parts = value.decode().split("|", 2)
        if len(parts) != 3:
            return None
        return Prediction(float(parts[0]), parts[1] == "1", parts[2])
