"""The worker's start-up check of the Redis server it counts in, on a private real Redis
(reconfigured freely: the shared one is left alone)."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import redis.asyncio as aioredis

from badbuzz.processes import free_port
from counting.redis_checks import unsafe_settings

pytestmark = pytest.mark.integration


@pytest.fixture
def private_redis(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path), "--appendonly", "yes", "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True).stdout.strip() != "PONG":
        assert time.monotonic() < deadline, "private redis-server did not start"
        time.sleep(0.05)
    yield url
    proc.terminate()
    proc.wait(10)


async def test_a_persistent_noeviction_redis_passes(private_redis):
    client = aioredis.Redis.from_url(private_redis)
    assert await unsafe_settings(client) == []
    await client.aclose()


async def test_an_evicting_policy_is_named(private_redis):
    client = aioredis.Redis.from_url(private_redis)
    await client.config_set("maxmemory-policy", "volatile-lru")
    assert await unsafe_settings(client) == ["maxmemory-policy is volatile-lru, which evicts counters under memory pressure"]
    await client.aclose()


async def test_no_persistence_is_named_and_snapshots_alone_suffice(private_redis):
    client = aioredis.Redis.from_url(private_redis)
    await client.config_set("appendonly", "no")
    assert await unsafe_settings(client) == ["neither AOF nor RDB snapshots are enabled, so a restart loses every count"]
    await client.config_set("save", "3600 1")
    assert await unsafe_settings(client) == []
    await client.aclose()


async def test_the_worker_refuses_to_start_on_an_unsafe_redis_unless_told(private_redis, tmp_path):
    client = aioredis.Redis.from_url(private_redis)
    await client.config_set("maxmemory-policy", "allkeys-lru")
    await client.aclose()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BADBUZZ_")}
    env.update(BADBUZZ_REDIS_URL=private_redis, BADBUZZ_HOME=str(tmp_path), BADBUZZ_MLFLOW_TRACKING_URI="")
    refused = subprocess.run([sys.executable, "-m", "badbuzz.cli", "worker"], env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "maxmemory-policy is allkeys-lru" in lines[0] and "BADBUZZ_REDIS_ACCEPT_UNSAFE=1" in lines[0]
    # Accepting the risk gets past the check: the next refusal is the missing model.
    accepted = subprocess.run(
        [sys.executable, "-m", "badbuzz.cli", "worker"], env={**env, "BADBUZZ_REDIS_ACCEPT_UNSAFE": "1"}, capture_output=True, text=True, timeout=60
    )
    assert accepted.returncode == 1
    assert "accepted by BADBUZZ_REDIS_ACCEPT_UNSAFE): maxmemory-policy is allkeys-lru" in accepted.stderr
    assert accepted.stderr.strip().splitlines()[-1].startswith("badbuzz: cannot load models:/badbuzz-sentiment@champion")
