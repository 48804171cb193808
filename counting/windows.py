"""Event-time windows over per-minute buckets: which minutes a window covers, and the
rates read from them. Pure; Redis access lives in ``counting.counters``."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

MINUTE_MS = 60_000
GLOBAL_SCOPE = "all"
SLIDING_WINDOWS_MIN = (5, 15, 60)


def minute_of(event_ms: int) -> int:
    return event_ms // MINUTE_MS


def window_minutes(end_minute: int, length_min: int, *, offset_min: int = 0) -> range:
    """The ``length_min`` minutes ending ``offset_min`` minutes before ``end_minute``
    (inclusive; the end minute is usually still filling)."""
    last = end_minute - offset_min
    return range(last - length_min + 1, last + 1)


@dataclass(frozen=True, slots=True)
class Bucket:
    total: int = 0
    negative: int = 0
    score_sum: float = 0.0


@dataclass(frozen=True, slots=True)
class WindowStats:
    start_minute: int
    end_minute: int
    total: int
    negative: int
    score_sum: float

    @property
    def rate(self) -> float:
        """Share of posts the model labelled negative (0 when the window is empty)."""
        return self.negative / self.total if self.total else 0.0

    @property
    def mean_score(self) -> float:
        return self.score_sum / self.total if self.total else 0.0

    @property
    def start_ms(self) -> int:
        return self.start_minute * MINUTE_MS

    @property
    def end_ms(self) -> int:
        """Exclusive end: the first millisecond after the window's last minute."""
        return (self.end_minute + 1) * MINUTE_MS


def aggregate(buckets: Mapping[int, Bucket], minutes: range) -> WindowStats:
    present: Iterable[Bucket] = [buckets[m] for m in minutes if m in buckets]
    total = negative = 0
    score_sum = 0.0
    for bucket in present:
        total += bucket.total
        negative += bucket.negative
        score_sum += bucket.score_sum
    return WindowStats(minutes.start, minutes.stop - 1, total, negative, score_sum)
