"""Driver terms, the history an evaluation reads, and the timer's event clock."""
import pytest

from alerting.drivers import over_represented
from alerting.escalation import EventClock
from alerting.history import history, reads_for
from alerting.rules import Slot
from counting.counters import HourBucket
from counting.windows import Bucket
from tests.configs import rule_config


def test_new_complaint_words_outrank_everyday_ones():
    # "delayed" is as common as ever; "hold" and "cancelled" exploded in the window.
    reference = {"delayed": 200, "service": 150, "bags": 100, "hold": 5, "crew": 45}
    window = {"delayed": 50, "service": 38, "bags": 25, "hold": 60, "cancelled": 40, "crew": 2, "rare": 2}
    drivers = over_represented(window, reference, 3)
    # Only two words are over-represented; less used or too rare ones never appear.
    assert [(d.term, d.count, d.baseline_count) for d in drivers] == [("hold", 60, 5), ("cancelled", 40, 0)]
    assert drivers[0].z > drivers[1].z > 3
    assert [d.term for d in over_represented(window, reference, 1)] == ["hold"]


def test_a_burst_of_complaints_about_everything_has_no_drivers():
    # The window's negative posts use words in the same proportions as before, give or
    # take chance: nothing stands out (z < 3 for each).
    reference = {"late": 27, "line": 5, "come": 3, "hard": 2, "wifi": 7, "service": 60, "hold": 20}
    window = {"late": 44, "line": 14, "come": 12, "hard": 10, "wifi": 16, "service": 90, "hold": 31}
    assert over_represented(window, reference, 8) == []


def test_drivers_without_reference_rank_by_frequency_and_skip_rare_words():
    drivers = over_represented({"refund": 9, "lost": 4, "bag": 4, "once": 2}, {}, 5)
    assert [(d.term, d.count, d.baseline_count) for d in drivers] == [("refund", 9, 0), ("bag", 4, 0), ("lost", 4, 0)]


def test_drivers_never_carry_handles_links_or_placeholders():
    window = {"@united": 50, "http://t.co/x": 50, "www.example.com": 50, "<url>": 50, "refund": 50}
    assert [d.term for d in over_represented(window, {}, 10)] == ["refund"]
    assert over_represented({}, {"refund": 3}, 3) == []


def test_reads_cover_the_partial_hour_the_trailing_hours_and_earlier_weeks():
    cfg = rule_config(baseline_hours=3, seasonal_weeks=2)
    # Evaluating minute 10_030: the long window starts at 10_016 (hour 166, minute 56).
    reads = reads_for(10_030, cfg)
    assert reads.minutes == range(9_960, 10_031)
    assert reads.hours == (165, 164, 163)
    assert reads.seasonal == ((-3, -2, -1), (-171, -170, -169))
    assert reads.counterparts == ((-2, -170), (-3, -171), (-4, -172), (-5, -173))


def test_history_slots_weigh_by_age_and_count_live_minutes():
    cfg = rule_config(baseline_hours=2, seasonal_weeks=1)
    end = 10_030  # long window 10_016..10_030; partial hour 9_960..10_015
    minutes = {m: Bucket(2, 1, 0.0) for m in range(9_960, 10_031)}
    global_minutes = {m: Bucket(5, 1, 0.0) for m in range(9_960, 10_031) if m % 2 == 0}
    hours = {165: HourBucket(100, 30, 60), 164: HourBucket(50, 10, 40), -2: HourBucket(70, 7, 60)}
    global_hours = {165: HourBucket(300, 60, 60), 164: HourBucket(200, 40, 40), -3: HourBucket(1, 0, 1), -2: HourBucket(99, 9, 60)}
    h = history(end, minutes, global_minutes, hours, global_hours, cfg)
    # Partial hour: 56 minutes of 2 posts, 28 of them live; its middle is 28 minutes back.
    assert h.recent == (
        Slot(28 / 60, 112, 56, 28),
        Slot((10_016 - 9_930) / 60, 100, 30, 60),
        Slot((10_016 - 9_870) / 60, 50, 10, 40),
    )
    # Last week's hours -3..-1 (middle: minute -90), live minutes of the global scope.
    assert h.seasonal == (Slot((10_016 + 90) / 60, 70, 7, 61),)
    # Each trailing slot's own hour last week: 166 (partial), 165 and 164 each minus 168.
    assert [[(s.total, s.live_minutes) for s in weeks] for weeks in h.recent_seasonal] == [[(70, 60)], [(0, 1)], [(0, 0)]]


def test_event_clock_follows_the_watermark_then_the_wall_clock_when_idle():
    clock = EventClock(idle_s=120)
    minute = 60_000
    assert clock.at(0, 1_000 * minute) == 0
    assert clock.at(500 * minute, 1_000 * minute) == 500 * minute  # replaying the past: stay on it
    assert clock.at(500 * minute, 1_001 * minute) == 500 * minute
    # Two minutes without the watermark moving: event time runs with the wall clock.
    assert clock.at(500 * minute, 1_002 * minute) == 502 * minute
    assert clock.at(500 * minute, 1_030 * minute) == 530 * minute
    # ... but never past now, and a moving watermark takes over again.
    assert clock.at(999 * minute, 1_031 * minute) == 999 * minute
    assert clock.at(999 * minute, 1_040 * minute) == 1_008 * minute
    assert clock.at(999 * minute, 2_000 * minute) == pytest.approx(min(2_000, 999 + 969) * minute)
