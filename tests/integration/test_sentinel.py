"""BADBUZZ_REDIS_MODE=sentinel: the client asks real Sentinels which server is the master,
counts there, and follows a failover to the promoted replica without losing a count."""
from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import uuid

import pytest
from redis import exceptions as redis_errors

from config.connections import redis_client
from config.settings import Settings
from counting.counters import Counters, ScoredPost
from tests.conftest import free_port

pytestmark = pytest.mark.integration


def _cli(port: int, *args: str) -> str:
    return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True, timeout=5).stdout.strip()


def _wait(condition, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.fixture
def sentinel_setup(tmp_path):
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (scripts/bootstrap.sh installs it)")
    master, replica, sentinel = free_port(), free_port(), free_port()
    procs = []

    def server(port: int, *extra: str) -> None:
        home = tmp_path / str(port)
        home.mkdir()
        procs.append(subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(home), "--save", "", "--appendonly", "yes", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))
        _wait(lambda: _cli(port, "ping") == "PONG", f"redis on {port}")

    server(master)
    server(replica, "--replicaof", "127.0.0.1", str(master))
    _wait(lambda: "master_link_status:up" in _cli(replica, "info", "replication"), "the replica to sync")
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {sentinel}\nbind 127.0.0.1\nsentinel monitor bbmaster 127.0.0.1 {master} 1\n"
        "sentinel down-after-milliseconds bbmaster 1000\nsentinel failover-timeout bbmaster 5000\n"
    )
    procs.append(subprocess.Popen(["redis-server", str(conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    _wait(lambda: _cli(sentinel, "ping") == "PONG", "the sentinel")
    _wait(lambda: "slaves=1" in _cli(sentinel, "info", "sentinel"), "the sentinel to see the replica")
    try:
        yield Settings(_env_file=None, redis_mode="sentinel", redis_sentinels=f"127.0.0.1:{sentinel}", redis_sentinel_master="bbmaster"), procs[0], replica
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


async def test_counts_go_to_the_master_the_sentinels_name_and_follow_a_failover(sentinel_setup):
    settings, master_proc, replica_port = sentinel_setup
    redis = redis_client(settings)
    counters = Counters(redis, prefix=f"test:sentinel:{uuid.uuid4().hex[:8]}", ttl_s=600)
    minute = int(time.time() // 60)
    try:
        posts = [ScoredPost(f"s{i}", minute * 60_000, 0.2, False, ("all",), (), offset=i) for i in range(100)]
        assert len(await counters.count_new(posts[:50], through_offset=49)) == 50
        # Replication is asynchronous: what the replica had not received would be forgotten
        # (and refused as CountsLost, see test_partitioned_counting).
        assert await redis.execute_command("WAIT", 1, 5000) == 1
        master_proc.kill()
        master_proc.wait()
        deadline = time.monotonic() + 30
        while True:
            try:
                assert len(await counters.count_new(posts[50:], through_offset=99, expected_through=49)) == 50
                break
            except (OSError, ConnectionError, redis_errors.RedisError) as exc:
                if time.monotonic() > deadline:
                    raise AssertionError(f"no failover within 30 s: {exc!r}") from exc
                await asyncio.sleep(0.5)
        assert _cli(replica_port, "role").splitlines()[0] == "master"
        assert (await counters.window("all", minute, 1)).total == 100
    finally:
        await redis.aclose()
