"""What the counters need from the Redis server they live in, checked before a worker
starts: keys are never evicted (an evicted counter silently forgets counted posts, and an
evicted idempotency key counts a redelivered post twice) and writes persist (a restart
without persistence forgets every count)."""
from __future__ import annotations

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

FIX = "set maxmemory-policy noeviction and appendonly yes (or save snapshots) on the server, or BADBUZZ_REDIS_ACCEPT_UNSAFE=1 to accept the risk"


async def unsafe_settings(client: aioredis.Redis) -> list[str]:
    """Why this server may lose counts; empty when it is safe. Reads INFO, which managed
    services answer, and CONFIG only where it is allowed."""
    memory = await client.info("memory")
    persistence = await client.info("persistence")
    problems = []
    policy = str(memory.get("maxmemory_policy", "noeviction"))
    if policy != "noeviction":
        problems.append(f"maxmemory-policy is {policy}, which evicts counters under memory pressure")
    if not int(persistence.get("aof_enabled", 0)) and not await _snapshots_configured(client):
        problems.append("neither AOF nor RDB snapshots are enabled, so a restart loses every count")
    return problems


async def _snapshots_configured(client: aioredis.Redis) -> bool:
    try:
        save = (await client.config_get("save")).get("save", "")
    except ResponseError:
        return False  # CONFIG disabled (managed service): only AOF, seen in INFO, counts
    return bool(str(save).strip())
