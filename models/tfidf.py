"""TF-IDF + logistic regression: a scikit-learn pipeline over preprocessed text.

Serving computes the pipeline's features itself where that is much cheaper and exactly
the same: a profile of the worker showed scikit-learn's character n-gram counting (a
Python loop over ~400 n-grams per post) as the largest cost of the whole stream. Those
n-grams never cross a word boundary (``char_wb``), so a post's counts are the sum of its
words' counts, and words repeat: each word's vocabulary indices are computed once, with
scikit-learn's own n-gram function, and cached."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import joblib
import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import FeatureUnion

from models.preprocess import preprocess
from models.scorer import ModelInfo, register_family

PIPELINE_FILE = "pipeline.joblib"

# Distinct words kept per vectorizer (a few tens of MB); past that the cache starts over,
# which costs a little speed and never correctness.
WORD_CACHE_LIMIT = 100_000


class CharWordCounts:
    """``CountVectorizer.transform`` of a fitted ``char_wb`` vectorizer, from per-word
    cached vocabulary indices; followed by the vectorizer's own TF-IDF weighting."""

    def __init__(self, vectorizer: TfidfVectorizer):
        self.vectorizer = vectorizer
        self._ngrams = vectorizer._char_wb_ngrams
        self._vocabulary = vectorizer.vocabulary_
        self._words: dict[str, np.ndarray] = {}

    def _indices(self, word: str) -> np.ndarray:
        if len(self._words) >= WORD_CACHE_LIMIT:
            self._words.clear()
        vocabulary = self._vocabulary
        found = np.fromiter((vocabulary[g] for g in self._ngrams(word) if g in vocabulary), dtype=np.int32)
        self._words[word] = found
        return found

    def counts(self, texts: Sequence[str]) -> sp.csr_matrix:
        cached, miss = self._words.get, self._indices
        columns: list[np.ndarray] = []
        owners: list[int] = []
        for row, text in enumerate(texts):
            for word in text.split():
                indices = cached(word)
                columns.append(miss(word) if indices is None else indices)
                owners.append(row)
        cols = np.concatenate(columns) if columns else np.zeros(0, dtype=np.int32)
        rows = np.repeat(np.asarray(owners, dtype=np.int64), np.fromiter(map(len, columns), dtype=np.int64, count=len(columns)))
        # Summing repeated (row, column) pairs by sorting row-major keys once: the per-post
        # n-gram counts with sorted indices, as scikit-learn leaves them (and about four
        # times cheaper than scipy's COO-to-CSR conversion).
        width = len(self._vocabulary)
        keys, counts = np.unique(rows * width + cols, return_counts=True)
        indptr = np.searchsorted(keys, np.arange(len(texts) + 1, dtype=np.int64) * width)
        return sp.csr_matrix(
            (counts.astype(self.vectorizer.dtype), (keys % width).astype(np.int32), indptr), shape=(len(texts), width)
        )

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        return self.vectorizer._tfidf.transform(self.counts(texts), copy=False)


def _word_separable(vectorizer: TfidfVectorizer) -> bool:
    """Character n-grams within words of text taken as it is (what training fits)."""
    return (
        vectorizer.analyzer == "char_wb"
        and vectorizer.input == "content"
        and not vectorizer.lowercase
        and vectorizer.strip_accents is None
        and vectorizer.preprocessor is None
    )


def _fast_features(pipeline) -> list | None:
    """Per-part transforms of the pipeline's feature union, or None when the pipeline is
    not the union of plain TF-IDF vectorizers this module knows how to reproduce."""
    if len(pipeline.steps) != 2 or not isinstance(pipeline.steps[0][1], FeatureUnion):
        return None
    union = pipeline.steps[0][1]
    if union.transformer_weights:
        return None
    parts = []
    for _, part in union.transformer_list:
        if not isinstance(part, TfidfVectorizer):
            return None
        parts.append(CharWordCounts(part).transform if _word_separable(part) else part.transform)
    return parts


class TfidfScorer:
    def __init__(self, pipeline, info: ModelInfo):
        self.pipeline = pipeline
        self.info = info
        self.classifier = pipeline.steps[-1][1]
        # predict_proba's columns follow classes_; label 1 means negative.
        self._neg_col = list(pipeline.classes_).index(1)
        self._features = _fast_features(pipeline)

    def score_batch(self, texts: Sequence[str]) -> np.ndarray:
        return self.score_clean([preprocess(t) for t in texts])

    def score_clean(self, clean_texts: Sequence[str]) -> np.ndarray:
        if not clean_texts:
            return np.zeros(0, dtype=np.float64)
        if self._features is None:
            probabilities = self.pipeline.predict_proba(clean_texts)
        else:
            features = sp.hstack([transform(clean_texts) for transform in self._features], format="csr")
            probabilities = self.classifier.predict_proba(features)
        return probabilities[:, self._neg_col].astype(np.float64)


@register_family("tfidf")
def load(bundle_dir: Path, info: ModelInfo) -> TfidfScorer:
    return TfidfScorer(joblib.load(bundle_dir / PIPELINE_FILE), info)
