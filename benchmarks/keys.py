"""Finding every key a run wrote under its Redis prefix, to delete them afterwards."""
from __future__ import annotations

import redis.asyncio as aioredis

from config.connections import shared_keyspace


def key_patterns(prefix: str) -> tuple[str, ...]:
    """SCAN MATCH patterns for all of ``prefix``'s keys: plain ``prefix:...`` ones, the
    shared state under its hash tag ``{prefix}:...``, and the counters under their
    per-partition tags ``{prefix:p<N>}...``. Braces are literal in Redis glob patterns."""
    return f"{prefix}:*", f"{shared_keyspace(prefix)}:*", "{" + prefix + ":*"


async def prefix_keys(redis: aioredis.Redis, prefix: str) -> list[bytes]:
    return [k for pattern in key_patterns(prefix) async for k in redis.scan_iter(match=pattern, count=5000)]


async def delete_prefix(redis: aioredis.Redis, prefix: str) -> None:
    """Deleted while scanning, a batch at a time: a benchmark leaves millions of keys."""
    for pattern in key_patterns(prefix):
        batch = []
        async for key in redis.scan_iter(match=pattern, count=5000):
            batch.append(key)
            if len(batch) == 5000:
                await redis.unlink(*batch)
                batch = []
        if batch:
            await redis.unlink(*batch)
