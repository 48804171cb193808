"""The in-memory dedup window of a partition: exact membership within the window, across
slices, and forgetting what is older than the window."""
from __future__ import annotations

import random

from counting.dedup import SLICES, DedupWindow, id_hash


def test_a_hash_is_known_for_the_window_across_slices_and_forgotten_after():
    window = DedupWindow(600_000)
    rng = random.Random(3)
    added: list[tuple[int, int]] = []
    for second in range(0, 600, 5):
        hashes = [rng.getrandbits(63) for _ in range(50)]
        assert window.fresh(hashes, second * 1000) == [True] * 50
        window.add(hashes, second * 1000)
        added += [(h, second * 1000) for h in hashes]
    assert len(window.closed) >= SLICES - 1
    probe = [h for h, _ in added[::37]]
    assert window.fresh(probe, 600_000) == [False] * len(probe)
    # Later, what arrived over ten minutes before is forgotten; what arrived since is not.
    now = 900_000
    old = [h for h, at in added if at < now - 600_000 - window.slice_ms]
    recent = [h for h, at in added if at >= now - 600_000]
    assert old and recent
    assert all(window.fresh(old, now)) and not any(window.fresh(recent, now))


def test_a_batch_repeating_an_id_counts_it_once():
    window = DedupWindow(60_000)
    a, b = id_hash("a"), id_hash("b")
    assert window.fresh([a, b, a, a], 0) == [True, True, False, False]
    assert window.contains([a, b], 0) == [False, False]


def test_ids_hash_to_stable_positive_63_bit_integers():
    assert id_hash("1600000000000000001") == id_hash("1600000000000000001")
    values = {id_hash(str(i)) for i in range(10_000)}
    assert len(values) == 10_000 and all(0 <= v < 2**63 for v in values)
    assert id_hash("\udcff lone surrogate") >= 0
