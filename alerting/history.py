"""Which counters one evaluation reads, and how they become the rule's observation
(short and long windows) and history (baseline slots). Pure: the Redis reads live in
``counting.counters``, the decisions in ``alerting.rules``.

For a long window starting at minute S, the trailing history is the part of S's clock
hour before S (minute buckets) plus the ``baseline_hours`` complete hours before that
(hourly rollups); the seasonal history is, for each earlier week, the three clock hours
around S's hour of week, and for each trailing slot its own hour of week in each earlier
week (to tell an unusual recent level from a usual daily cycle)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from alerting.rules import Baseline, History, Observation, RuleConfig, Slot, estimate_baseline
from counting.counters import HourBucket
from counting.windows import Bucket, aggregate, window_minutes

HOURS_PER_WEEK = 7 * 24


@dataclass(frozen=True)
class Reads:
    """The minute and hour buckets one evaluation needs, for the scope and the global
    scope (whose activity says when the stream was live)."""

    minutes: range
    hour: int  # the clock hour the long window starts in
    hours: tuple[int, ...]
    seasonal: tuple[tuple[int, ...], ...]  # per earlier week, its hours
    # Per trailing slot (the partial hour, then each hour back): per earlier week, the hour.
    counterparts: tuple[tuple[int, ...], ...]

    @property
    def all_hours(self) -> list[int]:
        every = [*self.hours, *(h for week in self.seasonal for h in week), *(h for hs in self.counterparts for h in hs)]
        return list(dict.fromkeys(every))


def long_window_start(end_minute: int, cfg: RuleConfig) -> int:
    return end_minute - cfg.window_min + 1


def reads_for(end_minute: int, cfg: RuleConfig) -> Reads:
    start = long_window_start(end_minute, cfg)
    hour = start // 60
    recent = tuple(hour - k for k in range(1, cfg.baseline_hours + 1))
    weeks = range(1, cfg.seasonal_weeks + 1)
    seasonal = tuple(tuple(hour - week * HOURS_PER_WEEK + d for d in (-1, 0, 1)) for week in weeks)
    counterparts = tuple(tuple(h - week * HOURS_PER_WEEK for week in weeks) for h in (hour, *recent))
    return Reads(range(hour * 60, end_minute + 1), hour, recent, seasonal, counterparts)


def history(
    end_minute: int,
    minutes: Mapping[int, Bucket],
    global_minutes: Mapping[int, Bucket],
    hours: Mapping[int, HourBucket],
    global_hours: Mapping[int, HourBucket],
    cfg: RuleConfig,
) -> History:
    start = long_window_start(end_minute, cfg)
    reads = reads_for(end_minute, cfg)
    slots, counterparts = [], []
    partial = range(reads.minutes.start, start)
    if len(partial):
        part = aggregate(minutes, partial)
        live = sum(1 for m in partial if m in global_minutes and global_minutes[m].total)
        middle = (partial.start + partial.stop) / 2
        slots.append(Slot((start - middle) / 60, part.total, part.negative, live))
        counterparts.append(reads.counterparts[0])
    for hour, weeks in zip(reads.hours, reads.counterparts[1:]):
        slots.append(_hour_slot(start, (hour,), hours, global_hours))
        counterparts.append(weeks)
    seasonal = tuple(_hour_slot(start, week, hours, global_hours) for week in reads.seasonal)
    recent_seasonal = tuple(tuple(_hour_slot(start, (h,), hours, global_hours) for h in weeks) for weeks in counterparts)
    return History(tuple(slots), seasonal, recent_seasonal)


def _hour_slot(start: int, hour_range: tuple[int, ...], hours: Mapping[int, HourBucket], global_hours: Mapping[int, HourBucket]) -> Slot:
    empty = HourBucket()
    total = sum(hours.get(h, empty).total for h in hour_range)
    negative = sum(hours.get(h, empty).negative for h in hour_range)
    live = sum(global_hours.get(h, empty).live_minutes for h in hour_range)
    middle = (hour_range[0] * 60 + (hour_range[-1] + 1) * 60) / 2
    return Slot((start - middle) / 60, total, negative, live)


def observe(end_minute: int, minutes: Mapping[int, Bucket], baseline: Baseline, cfg: RuleConfig) -> Observation:
    return Observation(
        end_minute,
        aggregate(minutes, window_minutes(end_minute, cfg.short_window_min)),
        aggregate(minutes, window_minutes(end_minute, cfg.window_min)),
        baseline,
    )


def baseline_at(
    end_minute: int,
    minutes: Mapping[int, Bucket],
    global_minutes: Mapping[int, Bucket],
    hours: Mapping[int, HourBucket],
    global_hours: Mapping[int, HourBucket],
    cfg: RuleConfig,
) -> Baseline:
    return estimate_baseline(history(end_minute, minutes, global_minutes, hours, global_hours, cfg), cfg)
