"""Fitting the TF-IDF family: word and character n-grams into a logistic regression.

The saved pipeline takes already-preprocessed text; ``models.tfidf`` applies
``preprocess`` at scoring time, so training applies the very same function here. It is
saved as plain data (``models.tfidf.write_pipeline``), never pickled."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline

from models.preprocess import preprocess, tokens
from models.tfidf import write_pipeline

PARAMS: dict[str, object] = {
    "word_ngram_range": (1, 2),
    "char_ngram_range": (2, 5),
    "min_df": 2,
    "C": 2.0,
    "solver": "liblinear",
    "max_iter": 1000,
    "class_weight": "balanced",
}


def build_pipeline(seed: int, params: dict[str, object] = PARAMS) -> Pipeline:
    common = {"min_df": params["min_df"], "sublinear_tf": True, "lowercase": False, "dtype": np.float32}
    features = FeatureUnion([
        # The shared tokenizer keeps <user>/<url> placeholders and hashtags whole.
        ("word", TfidfVectorizer(
            tokenizer=tokens, token_pattern=None, ngram_range=params["word_ngram_range"], **common
        )),
        ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=params["char_ngram_range"], **common)),
    ])
    classifier = LogisticRegression(
        C=params["C"],
        solver=params["solver"],
        max_iter=params["max_iter"],
        class_weight=params["class_weight"],
        random_state=seed,
    )
    return Pipeline([("features", features), ("classifier", classifier)])


def fit(texts: Sequence[str], labels: np.ndarray, seed: int, params: dict[str, object] = PARAMS) -> Pipeline:
    return build_pipeline(seed, params).fit([preprocess(t) for t in texts], labels)


def save(pipeline: Pipeline, bundle_dir: Path) -> None:
    write_pipeline(pipeline, bundle_dir)


def explain(pipeline: Pipeline, top: int = 30) -> dict:
    """The ``top`` features whose logistic-regression coefficients push hardest towards
    negative, and towards not negative, over the union's word and char n-grams. A
    feature's push on one text also scales with its TF-IDF weight there; the coefficient
    is what it contributes per unit."""
    names = pipeline.named_steps["features"].get_feature_names_out()
    classifier = pipeline.named_steps["classifier"]
    # coef_ pushes towards classes_[1]; label 1 means negative.
    towards_negative = classifier.coef_[0] if classifier.classes_[1] == 1 else -classifier.coef_[0]

    def ranked(weights: np.ndarray) -> list[dict[str, object]]:
        order = np.argsort(-weights, kind="stable")[:top]
        return [
            {"feature": names[i].split("__", 1)[0], "term": names[i].split("__", 1)[1], "coefficient": round(float(weights[i]), 6)}
            for i in order
        ]

    return {
        "method": "logistic-regression coefficients over the TF-IDF feature union (word and char_wb n-grams of preprocessed text)",
        "towards_negative": ranked(towards_negative),
        "towards_not_negative": ranked(-towards_negative),
    }
