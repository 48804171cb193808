"""The worker's chart reads: one build at a time, shared by every request inside the
cache period, so a crowd of viewers costs Redis and the event loop one chart."""
from __future__ import annotations

import asyncio

from stream.dashboard import CHART_CACHE_S
from stream.web import SharedReader
from tests.configs import rule_config


class FakeCounters:
    def __init__(self):
        self.snapshots = 0

    async def watermark_ms(self):
        return 1_700_000_000_000

    async def snapshot(self, scopes, minutes, hours):
        self.snapshots += 1
        await asyncio.sleep(0.01)
        return {scope: ({}, {}) for scope in scopes}


class FakeIncidents:
    async def get_many(self, keys):
        return {}


class FakeAlerting:
    def __init__(self):
        self.cfg = rule_config()
        self.scopes = ["all", "term:delay"]
        self.counters = FakeCounters()
        self.incidents = FakeIncidents()


async def test_concurrent_viewers_share_one_chart_build_until_it_is_stale():
    now = [1000.0]
    alerting = FakeAlerting()
    reader = SharedReader(alerting, clock=lambda: now[0])
    first = await asyncio.gather(*(reader.windows("all", 2880, "m v1") for _ in range(20)))
    assert alerting.counters.snapshots == 1
    assert all(p == first[0] for p in first) and first[0]["scope"] == "all"
    await reader.windows("term:delay", 2880, "m v1")  # another chart is its own build
    assert alerting.counters.snapshots == 2
    now[0] += CHART_CACHE_S + 0.1
    await reader.windows("all", 2880, "m v1")
    assert alerting.counters.snapshots == 3
