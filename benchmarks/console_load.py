"""The console under load: signed-in viewers (each through the real sign-in form, in an
httpx session of its own) polling the live view's API and the pages, while one worker
drains a backlog at full speed. The worker's throughput is measured in the same run
without viewers, with them, and without them again, so the ratio compares one process
with itself."""
from __future__ import annotations

import asyncio
import os
import re
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx

from badbuzz.processes import PROJECT_ROOT, free_port, settings_env, start_worker, stop_worker
from benchmarks.keys import delete_prefix
from config.connections import redis_client
from config.settings import Settings
from config.topics import delete_topics, ensure_topics

NAME, PASSWORD = "bench-viewer", "bench viewer password"
# What a viewer asks for, in turn: the live view's data (what its page polls), the pages.
REQUESTS = (
    ("GET /api/v1/windows (live view data)", "/api/v1/windows?scope=all&minutes=180"),
    ("GET /live", "/live"),
    ("GET /incidents", "/incidents"),
    ("GET /api/v1/incidents", "/api/v1/incidents"),
)
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else (values[0] if values else float("nan"))


async def sign_in(base: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=base, timeout=30)
    form = await client.get("/login")
    token = _CSRF.search(form.text).group(1)
    answer = await client.post("/login", data={"name": NAME, "password": PASSWORD, "csrf": token, "next": "/live"})
    if answer.status_code != 303 or "bb_session" not in client.cookies:
        raise RuntimeError(f"sign-in failed: {answer.status_code} {answer.text[:200]}")
    return client


async def viewer(client: httpx.AsyncClient, until: float, pause_s: float, timings: dict[str, list[float]], errors: dict[str, int]) -> None:
    k = 0
    while time.monotonic() < until:
        label, path = REQUESTS[k % len(REQUESTS)]
        k += 1
        started = time.perf_counter()
        try:
            answer = await client.get(path)
            ok = answer.status_code == 200
        except httpx.HTTPError:
            ok = False
        if ok:
            timings[label].append((time.perf_counter() - started) * 1000)
        else:
            errors[label] += 1
        await asyncio.sleep(pause_s)


async def _rate(counted: Callable, seconds: float) -> float:
    before, started = await counted(), time.perf_counter()
    await asyncio.sleep(seconds)
    return (await counted() - before) / (time.perf_counter() - started)


async def console_load(
    settings: Settings, model_uri: str, *, posts: int, viewers: int, seconds: float, pause_s: float, quiet_s: float, log_dir: Path,
    produce: Callable, messages: Callable, counted: Callable,
) -> tuple[list[dict], dict]:
    """(per request: count, p50, p95, errors; the worker's posts/s without, with and
    without viewers again, and the ratio). ``produce``, ``messages`` and ``counted`` are
    the end-to-end benchmark's own (benchmarks.run)."""
    run = f"bench-{uuid.uuid4().hex[:8]}"
    s = settings.model_copy(
        update=dict(
            topic_raw=f"{run}.raw", topic_dlq=f"{run}.dlq", topic_alerts=f"{run}.alerts", redis_prefix=f"bench:{run}", app_id=f"badbuzz-{run}",
            model_uri=model_uri, web_port=free_port(), console_port=free_port(), console_cookie_secure=False,
        )
    )
    from console.app import accounts_for

    redis = redis_client(s)
    await accounts_for(s, redis).add_user(NAME, "viewer", PASSWORD)
    await ensure_topics(s, [s.topic_raw, s.topic_dlq, s.topic_alerts], partitions=4)
    await produce(s, s.topic_raw, messages(posts, run))
    log_dir.mkdir(parents=True, exist_ok=True)
    with (log_dir / f"{run}-console.log").open("w") as log:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BADBUZZ_")} | settings_env(s)
        console = subprocess.Popen([sys.executable, "-m", "badbuzz.cli", "console"], env=env, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{s.console_port}"
    clients: list[httpx.AsyncClient] = []
    worker = None
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if console.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the console did not start; see {log_dir}")
            await asyncio.sleep(0.5)
        clients = list(await asyncio.gather(*(sign_in(base) for _ in range(viewers))))

        worker = start_worker(s, log_dir / f"{run}-worker.log")
        deadline = time.monotonic() + 300
        while await counted(redis, s.redis_prefix) == 0:
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker counted nothing; see {log_dir}")
            await asyncio.sleep(0.2)
        await asyncio.sleep(3)  # past the first batches' warm-up

        async def now_counted() -> int:
            return await counted(redis, s.redis_prefix)

        before = await _rate(now_counted, quiet_s)
        timings: dict[str, list[float]] = {label: [] for label, _ in REQUESTS}
        errors = dict.fromkeys(timings, 0)
        until = time.monotonic() + seconds
        loaded, _ = await asyncio.gather(
            _rate(now_counted, seconds), asyncio.gather(*(viewer(c, until, pause_s, timings, errors) for c in clients))
        )
        after = await _rate(now_counted, quiet_s)
        left = posts - await now_counted()
        if left <= 0:
            raise RuntimeError(f"the worker drained all {posts} posts before the run ended: the rates are not at full speed")
        rows = [
            {"request": label, "viewers": viewers, "requests": len(ms), "p50_ms": _pct(ms, 50), "p95_ms": _pct(ms, 95), "errors": errors[label]}
            for label, ms in timings.items()
        ]
        alone = (before + after) / 2
        worker_row = {
            "viewers": viewers, "seconds": seconds, "worker_posts_per_s_without": alone, "worker_posts_per_s_with": loaded,
            "ratio_with_vs_without": loaded / alone if alone else float("nan"),
        }
        return rows, worker_row
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
        if worker is not None:
            stop_worker(worker)
        stop_worker(console)
        await delete_prefix(redis, s.redis_prefix)
        await redis.aclose()
        await delete_topics(s, [s.topic_raw, s.topic_dlq, s.topic_alerts])
