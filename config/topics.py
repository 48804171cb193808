"""Kafka topic administration: the topics exist, with the configured partitions, before
anything produces to them (broker auto-creation would pick its own defaults)."""
from __future__ import annotations

import asyncio
import time
from typing import Sequence

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from config.connections import kafka_options
from config.settings import Settings


async def ensure_topics(settings: Settings, names: Sequence[str], *, partitions: int | None = None) -> None:
    admin = AIOKafkaAdminClient(**kafka_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in names if n not in existing]
        if missing:
            try:
                await admin.create_topics(
                    [NewTopic(n, num_partitions=partitions or settings.topic_partitions, replication_factor=1) for n in missing]
                )
            except TopicAlreadyExistsError:
                pass  # another worker created it between our list and create
            await _wait_for_leaders(admin, missing)
    finally:
        await admin.close()


async def _wait_for_leaders(admin: AIOKafkaAdminClient, names: Sequence[str], timeout_s: float = 30.0) -> None:
    """A new topic's partitions have no leader for a moment; producing then only earns
    retries and warnings."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        described = await admin.describe_topics(list(names))
        if all(t["partitions"] and all(p["leader"] >= 0 for p in t["partitions"]) for t in described):
            return
        await asyncio.sleep(0.1)


async def delete_topics(settings: Settings, names: Sequence[str]) -> None:
    admin = AIOKafkaAdminClient(**kafka_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        doomed = [n for n in names if n in existing]
        if doomed:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()
