"""What counting costs Redis per post, measured on the server: CPU seconds, commands and
memory over every master, while posts are counted as workers count them (batches of 1,024
spread over 12 partitions, offsets stored). Used by ``badbuzz bench`` (the standalone
Redis) and ``badbuzz bench-cluster`` (standalone and Redis Cluster)."""
from __future__ import annotations

import functools
import time
import uuid
import zlib
from collections.abc import Sequence

import redis.asyncio as aioredis

from badbuzz.services import cluster
from benchmarks.keys import delete_prefix
from config.connections import redis_client
from config.settings import Settings
from counting.counters import Counters, PartitionBatch, ScoredPost, ShownPost
from models.preprocess import mask

MINUTE_MS = 60_000
PARTITIONS = 12
# A worker's batch under load (BADBUZZ_BATCH_SIZE).
BATCH = 1024

async def _masters(settings: Settings) -> list[aioredis.Redis]:
    """A plain client per Redis master (the one server when standalone)."""
    if settings.redis_mode != "cluster":
        return [aioredis.Redis.from_url(settings.redis_url)]
    ports = [port for port, (role, _) in cluster.redis_topology(settings).items() if role == "master"]
    return [aioredis.Redis(host="127.0.0.1", port=port) for port in ports]


async def _server_totals(masters: Sequence[aioredis.Redis]) -> dict[str, float]:
    totals = {"cpu_s": 0.0, "memory": 0.0, "commands": 0.0}
    for client in masters:
        info = await client.info()
        totals["cpu_s"] += info["used_cpu_user"] + info["used_cpu_sys"]
        # The keys and values themselves: replication and client buffers come and go.
        totals["memory"] += info["used_memory_dataset"]
        totals["commands"] += info["total_commands_processed"]
    return totals


# Posts per minute of event time in the synthetic streams: a storm on a large brand
# (170 posts/s) and a market's firehose (1,700/s). Each (partition, scope, minute) costs
# Redis a fixed few kilobytes (its buckets, terms and example posts), so a sparser stream
# costs more per post; the dedup window costs about 8 bytes a post, for the window only.
DENSITIES = (10_000, 100_000)


def synthetic_posts(n: int, *, per_minute: int, partitions: int = PARTITIONS) -> list[dict[int, list[ScoredPost]]]:
    """``n`` posts at ``per_minute`` posts per minute of event time, as batches in arrival
    order, each {partition: its posts} (the posts spread over the partitions as keys spread
    them): two thirds negative, with the driver terms of real airline posts, a tenth in a
    watch-term scope."""
    from counting.terms import driver_terms
    from models.preprocess import preprocess

    terms = [driver_terms(preprocess(text)) for text in _texts()]
    span_min = max(1, n // per_minute)
    base = (int(time.time() * 1000) // MINUTE_MS - span_min - 1) * MINUTE_MS
    offsets = [0] * partitions
    batches = []
    for start in range(0, n, BATCH):
        batch: dict[int, list[ScoredPost]] = {}
        for i in range(start, min(start + BATCH, n)):
            post_id = f"m{i}-{uuid.uuid4().hex[:12]}"
            partition = zlib.crc32(post_id.encode()) % partitions
            batch.setdefault(partition, []).append(ScoredPost(
                post_id, base + (i * span_min * MINUTE_MS) // n, 0.5 + (i % 97) / 200 if i % 3 else 0.2, i % 3 != 0,
                ("all", "term:delay") if i % 10 == 0 else ("all",), terms[i % len(terms)] if i % 3 else (), offset=offsets[partition],
            ))
            offsets[partition] += 1
        batches.append(batch)
    return batches


@functools.cache
def _texts() -> tuple[str, ...]:
    from benchmarks.run import sample_texts

    return tuple(sample_texts(3000))


def _shown(post: ScoredPost) -> ShownPost:
    texts = _texts()
    return ShownPost(mask(texts[zlib.crc32(post.id.encode()) % len(texts)]), None)


async def redis_counting_cost(settings: Settings, n: int, *, per_minute: int = DENSITIES[0]) -> dict:
    """Count ``n`` posts straight into Redis as workers do (batches of 1,024, 12 partitions,
    offsets stored) and measure, over the masters: CPU, commands and memory per post."""
    redis = redis_client(settings)
    prefix = f"bench:cost-{uuid.uuid4().hex[:8]}"
    counters = Counters(redis, prefix=prefix, ttl_s=3600)
    masters = await _masters(settings)
    batches = synthetic_posts(n, per_minute=per_minute)
    try:
        before = await _server_totals(masters)
        started = time.perf_counter()
        for batch in batches:
            # What the console may show of the posts that become examples: real posts, masked.
            await counters.count_batch([
                PartitionBatch(partition, posts, through_offset=posts[-1].offset, shown=lambda i, posts=posts: _shown(posts[i]))
                for partition, posts in batch.items()
            ])
        elapsed = time.perf_counter() - started
        after = await _server_totals(masters)
        assert (await counters.window("all", int(time.time() * 1000) // MINUTE_MS, 180)).total == n, "the benchmark lost posts"
        # What the keys themselves take (MEMORY USAGE): the dataset figure also moves with
        # allocator and replication buffers, by a few MiB per million posts on a cluster.
        key_bytes = 0
        for client in masters:
            async for key in client.scan_iter(match="{" + prefix + ":*", count=1000):
                key_bytes += await client.memory_usage(key, samples=0) or 0
    finally:
        await delete_prefix(redis, prefix)
        await redis.aclose()
        for client in masters:
            await client.aclose()
    return {
        "redis": settings.redis_mode,
        "posts": n,
        "posts_per_minute": per_minute,
        # The fixed-cost units: (partition, scope, minute) groups the posts fell in.
        "partition_scope_minutes": len({
            (partition, scope, p.event_ms // MINUTE_MS) for batch in batches for partition, posts in batch.items() for p in posts for scope in p.scopes
        }),
        "redis_cpu_us_per_post": (after["cpu_s"] - before["cpu_s"]) / n * 1e6,
        "redis_commands_per_post": (after["commands"] - before["commands"]) / n,
        "mib_per_million_posts": (after["memory"] - before["memory"]) / n * 1_000_000 / 2**20,
        "keys_mib_per_million_posts": key_bytes / n * 1_000_000 / 2**20,
        "posts_per_s_one_client": n / elapsed,
    }


