"""Which terms explain a spike: words over-represented in the alert window's negative
posts compared with the negative posts just before it. Pure.

The score is the log-odds ratio with an informative Dirichlet prior (Monroe, Colaresi &
Quinn 2008, "Fightin' Words"), divided by its standard error: a z-score that is large
for a word that is both much more frequent than before and frequent enough to trust,
and small for everyday complaint words whose share did not change. The prior is the
pooled frequency of each word in both windows, scaled to ``PRIOR_STRENGTH`` pseudo-counts,
so a word never seen before does not get an infinite score. Hundreds of words are tested
per alert, so only z >= ``MIN_Z`` counts (about one chance word per several alerts): a
burst of complaints about everything has no drivers, and the alert says so. With no
reference posts at all the drivers are simply the most used words (z = 0)."""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

PRIOR_STRENGTH = 100.0
MIN_COUNT = 3
MIN_Z = 3.0


@dataclass(frozen=True)
class Driver:
    term: str
    count: int  # negative posts in the window that use it
    baseline_count: int  # negative posts in the reference window that use it
    z: float

    def to_dict(self) -> dict:
        return {"term": self.term, "count": self.count, "baseline_count": self.baseline_count, "z": self.z}


def over_represented(
    window: Mapping[str, int], reference: Mapping[str, int], k: int, *, min_count: int = MIN_COUNT
) -> list[Driver]:
    """The ``k`` window terms with the highest z-score of at least ``MIN_Z`` (ties: more
    frequent, then alphabetical), among terms used by at least ``min_count`` window posts."""
    window = {t: c for t, c in window.items() if c > 0 and _publishable(t)}
    reference = {t: c for t, c in reference.items() if c > 0 and _publishable(t)}
    n_window, n_reference = sum(window.values()), sum(reference.values())
    pooled = n_window + n_reference
    if not n_reference:
        # Nothing to compare with (a scope's first hour): the most used words, unscored.
        frequent = sorted(((c, t) for t, c in window.items() if c >= min_count), key=lambda ct: (-ct[0], ct[1]))
        return [Driver(t, c, 0, 0.0) for c, t in frequent[:k]]
    drivers = []
    for term, y_w in window.items():
        if y_w < min_count:
            continue
        y_r = reference.get(term, 0)
        others = pooled - y_w - y_r
        if not others:
            # The only word in both windows: its share is 1 before and after, no rise
            # (and the log-odds of the other words would divide by zero).
            continue
        alpha = PRIOR_STRENGTH * (y_w + y_r) / pooled
        # Counts and pseudo-counts of the other words, each window: from the integer
        # counts, so rounding cannot bring them to zero.
        rest_alpha = PRIOR_STRENGTH * others / pooled
        delta = math.log((y_w + alpha) / (n_window - y_w + rest_alpha)) - math.log((y_r + alpha) / (n_reference - y_r + rest_alpha))
        z = delta / math.sqrt(1 / (y_w + alpha) + 1 / (y_r + alpha))
        if z >= MIN_Z:
            drivers.append(Driver(term, y_w, y_r, round(z, 2)))
    drivers.sort(key=lambda d: (-d.z, -d.count, d.term))
    return drivers[:k]


def _publishable(term: str) -> bool:
    # Driver terms come from preprocessed text, where handles and links are already
    # placeholders; this keeps a future tokeniser change from leaking either.
    return bool(term) and not term.startswith("@") and "://" not in term and not term.startswith("www.") and not term.startswith("<")
