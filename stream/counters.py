"""Windowed counters in Redis: one hash per (scope, event-time minute) holding the post
count ``n``, the negative count ``neg`` and the score sum ``s``, plus a sorted set of the
terms of that minute's negative posts (the alert drivers).

Counting is idempotent per post id: one Lua script marks the id seen and increments the
buckets atomically, so a redelivered post (at-least-once consumption, a worker killed
mid-batch, a duplicate in the feed) never counts twice and a crash never leaves a post
marked seen but uncounted. Every key carries a TTL so Redis does not grow without bound.

Key layout (``P`` is ``BADBUZZ_REDIS_PREFIX``): ``P:seen:<id>``, ``P:b:<scope>:<minute>``,
``P:t:<scope>:<minute>``, ``P:wm`` (newest counted event time, ms)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import redis.asyncio as aioredis

from stream.windows import Bucket, WindowStats, aggregate, window_minutes

_COUNT_SCRIPT = """
local prefix = ARGV[1]
local ttl = tonumber(ARGV[2])
local i = 4
local n = #ARGV
local counted = 0
while i <= n do
  local minute = ARGV[i + 1]
  local score = ARGV[i + 2]
  local neg = ARGV[i + 3] == '1'
  local nscopes = tonumber(ARGV[i + 4])
  local first_scope = i + 5
  local nterms = tonumber(ARGV[first_scope + nscopes])
  local first_term = first_scope + nscopes + 1
  if redis.call('SET', prefix .. ':seen:' .. ARGV[i], '1', 'NX', 'EX', ttl) then
    counted = counted + 1
    for s = first_scope, first_scope + nscopes - 1 do
      local key = prefix .. ':b:' .. ARGV[s] .. ':' .. minute
      redis.call('HINCRBY', key, 'n', 1)
      if neg then redis.call('HINCRBY', key, 'neg', 1) end
      redis.call('HINCRBYFLOAT', key, 's', score)
      redis.call('EXPIRE', key, ttl)
      if neg and nterms > 0 then
        local tkey = prefix .. ':t:' .. ARGV[s] .. ':' .. minute
        for t = first_term, first_term + nterms - 1 do
          redis.call('ZINCRBY', tkey, 1, ARGV[t])
        end
        redis.call('EXPIRE', tkey, ttl)
      end
    end
  end
  i = first_term + nterms
end
local wm_key = prefix .. ':wm'
if counted > 0 and tonumber(ARGV[3]) > tonumber(redis.call('GET', wm_key) or '0') then
  redis.call('SET', wm_key, ARGV[3])
end
return counted
"""


@dataclass(frozen=True, slots=True)
class ScoredPost:
    id: str
    event_ms: int
    score: float
    negative: bool
    scopes: Sequence[str]
    terms: Sequence[str]


class Counters:
    def __init__(self, redis: aioredis.Redis, *, prefix: str, ttl_s: int):
        self.redis = redis
        self.prefix = prefix
        self.ttl_s = ttl_s
        self._count = redis.register_script(_COUNT_SCRIPT)

    async def count(self, posts: Sequence[ScoredPost]) -> int:
        """Count posts not seen before; return how many were new."""
        if not posts:
            return 0
        args: list[object] = [self.prefix, self.ttl_s, max(p.event_ms for p in posts)]
        for post in posts:
            args += [post.id, post.event_ms // 60_000, repr(post.score), 1 if post.negative else 0, len(post.scopes)]
            args += post.scopes
            args.append(len(post.terms))
            args += post.terms
        return int(await self._count(args=args))

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

    async def top_terms(self, scope: str, minutes: range, k: int) -> list[tuple[str, int]]:
        keys = [f"{self.prefix}:t:{scope}:{m}" for m in minutes]
        merged = await self.redis.zunion(keys, withscores=True)
        ranked = sorted(((term.decode(), int(score)) for term, score in merged), key=lambda ts: (-ts[1], ts[0]))
        return ranked[:k]
