"""What a worker computes before Redis stores it: a batch's sums per (scope, minute), a
minute's terms after a batch (the most frequent kept) and its examples (the most
negative, ties by id). Pure: no Redis."""
from __future__ import annotations

import zlib

from counting.counters import TERMS_KEPT, ScoredPost, batch_sums, merge_examples, merge_terms


def test_a_batch_sums_each_scope_and_minute_with_its_negative_posts_terms_and_examples():
    posts = [
        ScoredPost("a", 60_000 * 7 + 1, 0.9, True, ("all", "term:bag"), ("bag", "lost")),
        ScoredPost("b", 60_000 * 7 + 2, 0.2, False, ("all",), ("ignored",)),
        ScoredPost("c", 60_000 * 8, 0.8, True, ("all",), ("bag",)),
    ]
    sums = batch_sums(posts)
    assert set(sums) == {("all", 7), ("term:bag", 7), ("all", 8)}
    seven = sums[("all", 7)]
    assert (seven.n, seven.neg, round(seven.s, 9), seven.terms) == (2, 1, 1.1, {"bag": 1, "lost": 1})
    # A negative post's other scopes go with it, to tell later whether it is still shown.
    assert seven.negatives == [(0.9, "a", ("term:bag",), 0)]
    assert sums[("term:bag", 7)].negatives == [(0.9, "a", ("all",), 0)]
    assert sums[("all", 8)].negatives == [(0.8, "c", (), 2)]


def test_terms_add_up_and_only_the_most_frequent_are_kept_ties_by_hash_not_spelling():
    kept = {"delay": 5, "gate": 2}
    assert merge_terms(kept, {"gate": 4, "crew": 1}) == {"gate": 6, "delay": 5, "crew": 1}
    assert kept == {"delay": 5, "gate": 2}
    many = {f"t{i}": 1 for i in range(TERMS_KEPT + 10)}
    merged = merge_terms({"top": 3}, many)
    assert len(merged) == TERMS_KEPT and next(iter(merged)) == "top"
    tied = sorted(many, key=lambda t: zlib.crc32(t.encode()))[: TERMS_KEPT - 1]
    assert set(merged) == {"top", *tied}


def test_examples_keep_the_k_most_negative_ties_by_smaller_id_whatever_the_batches():
    entries = [(0.9, "p3", ()), (0.95, "p9", ()), (0.9, "p1", ()), (0.8, "p0", ()), (0.9, "p2", ())]
    one_go = merge_examples([], entries, 3)
    in_batches: list = []
    for entry in entries:
        in_batches = merge_examples(in_batches, [entry], 3)
    assert [e[1] for e in one_go] == [e[1] for e in in_batches] == ["p9", "p1", "p2"]
    assert merge_examples(one_go, [], 3) == one_go
