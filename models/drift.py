"""Input and output drift of a served model, against a reference taken at training time.

Training writes ``drift_reference.json`` into every bundle: the histogram of the model's
scores on the validation split (equal-width bins over [0, 1]) and the training
vocabulary's ``top_n`` most frequent tokens (after the shared ``preprocess``). Serving
compares live traffic with it:

- **score PSI** (population stability index) between the reference histogram and the
  live one: ~0 for the same distribution, above 0.25 by convention a shift worth acting on;
- **out-of-vocabulary rate**: the share of live tokens outside the reference vocabulary
  (another language, another domain, a new product name), and the most frequent of those
  tokens ("new frequent terms").

Pure functions and small value types: the stream accumulates and stores, this computes."""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.preprocess import preprocess, tokens

REFERENCE_FILE = "drift_reference.json"
BINS = 10
TOP_N = 5000
# Empty bins would make PSI infinite: every bin holds at least this share.
_EPSILON = 1e-4


@dataclass(frozen=True)
class DriftReference:
    bins: int
    histogram: tuple[float, ...]  # share of validation scores per bin, sums to 1
    vocabulary: frozenset[str]
    oov_rate: float  # the validation split's own out-of-vocabulary rate, for comparison
    posts: int

    def to_json(self) -> dict:
        return {
            "bins": self.bins,
            "score_histogram": list(self.histogram),
            "vocabulary": sorted(self.vocabulary),
            "validation_oov_rate": self.oov_rate,
            "validation_posts": self.posts,
        }

    @classmethod
    def from_json(cls, data: Mapping) -> DriftReference:
        histogram = tuple(float(x) for x in data["score_histogram"])
        if len(histogram) != int(data["bins"]):
            raise ValueError(f"score_histogram has {len(histogram)} bins, the reference says {data['bins']}")
        return cls(int(data["bins"]), histogram, frozenset(data["vocabulary"]), float(data["validation_oov_rate"]), int(data["validation_posts"]))


def bin_counts(scores: Sequence[float] | np.ndarray, bins: int = BINS) -> np.ndarray:
    """Scores per equal-width bin over [0, 1] (1.0 falls in the last bin)."""
    values = np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0)
    index = np.minimum((values * bins).astype(np.int64), bins - 1)
    return np.bincount(index, minlength=bins)


def shares(counts: Sequence[float]) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    return counts / total if total > 0 else np.zeros_like(counts)


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Population stability index between two histograms (counts or shares, same bins):
    sum over bins of (a - e) * ln(a / e) on shares, empty bins floored at a tiny share."""
    e = np.maximum(shares(expected), _EPSILON)
    a = np.maximum(shares(actual), _EPSILON)
    if e.shape != a.shape:
        raise ValueError(f"histograms have {e.size} and {a.size} bins")
    return float(np.sum((a - e) * np.log(a / e)))


def token_counts(clean_texts: Iterable[str]) -> Counter:
    """Every token of already-preprocessed texts, counted."""
    counts: Counter = Counter()
    for text in clean_texts:
        counts.update(tokens(text))
    return counts


def vocabulary(texts: Iterable[str], top_n: int = TOP_N) -> frozenset[str]:
    """The ``top_n`` tokens found in the most raw training texts (ties by token)."""
    documents: Counter = Counter()
    for text in texts:
        documents.update(set(tokens(preprocess(text))))
    ranked = sorted(documents.items(), key=lambda kv: (-kv[1], kv[0]))
    return frozenset(token for token, _ in ranked[:top_n])


@dataclass(frozen=True)
class VocabularyDrift:
    tokens: int
    oov: int
    new_terms: tuple[tuple[str, int], ...]  # most frequent out-of-vocabulary tokens

    @property
    def oov_rate(self) -> float:
        return self.oov / self.tokens if self.tokens else 0.0


def vocabulary_drift(counts: Mapping[str, int], known: frozenset[str], *, top: int = 10, min_count: int = 3) -> VocabularyDrift:
    """Out-of-vocabulary share of ``counts``, and the ``top`` unknown tokens seen at least
    ``min_count`` times. Placeholders and tokens without a letter (flight numbers, times)
    always count as known: a new flight number is not a new vocabulary."""
    total = sum(counts.values())
    unknown = {t: n for t, n in counts.items() if t not in known and not t.startswith("<") and any(c.isalpha() for c in t)}
    ranked = sorted(((t, n) for t, n in unknown.items() if n >= min_count), key=lambda tn: (-tn[1], tn[0]))
    return VocabularyDrift(total, sum(unknown.values()), tuple(ranked[:top]))


def build_reference(
    val_scores: Sequence[float] | np.ndarray, train_texts: Sequence[str], val_texts: Sequence[str], *, bins: int = BINS, top_n: int = TOP_N
) -> DriftReference:
    known = vocabulary(train_texts, top_n)
    val_drift = vocabulary_drift(token_counts(preprocess(t) for t in val_texts), known)
    return DriftReference(bins, tuple(float(x) for x in shares(bin_counts(val_scores, bins))), known, val_drift.oov_rate, len(val_scores))


def write_reference(bundle_dir: Path, reference: DriftReference) -> None:
    (Path(bundle_dir) / REFERENCE_FILE).write_text(json.dumps(reference.to_json(), ensure_ascii=False))


def read_reference(bundle_dir: Path) -> DriftReference | None:
    """The bundle's reference, or None for a bundle trained before references existed."""
    path = Path(bundle_dir) / REFERENCE_FILE
    if not path.is_file():
        return None
    return DriftReference.from_json(json.loads(path.read_text()))


@dataclass(frozen=True)
class DriftStatus:
    posts: int
    psi: float | None  # None: too few posts, or no comparable reference
    oov_rate: float | None
    new_terms: tuple[tuple[str, int], ...] = ()


def assess(
    reference: DriftReference,
    score_counts: Sequence[int],
    *,
    tokens: int,
    oov: int,
    new_terms: Sequence[tuple[str, int]] = (),
    min_posts: int,
) -> DriftStatus:
    """PSI and out-of-vocabulary rate of a window; None figures while it has fewer than
    ``min_posts`` posts (a handful of posts says nothing about a distribution)."""
    posts = int(sum(score_counts))
    if posts < min_posts:
        return DriftStatus(posts, None, None, tuple(new_terms))
    value = psi(reference.histogram, score_counts) if len(score_counts) == reference.bins else None
    return DriftStatus(posts, value, oov / tokens if tokens else 0.0, tuple(new_terms))
