"""TF-IDF + logistic regression: a scikit-learn pipeline over preprocessed text."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import joblib
import numpy as np

from models.preprocess import preprocess
from models.scorer import ModelInfo, register_family

PIPELINE_FILE = "pipeline.joblib"


class TfidfScorer:
    def __init__(self, pipeline, info: ModelInfo):
        self.pipeline = pipeline
        self.info = info
        # predict_proba's columns follow classes_; label 1 means negative.
        self._neg_col = list(pipeline.classes_).index(1)

    def score_batch(self, texts: Sequence[str]) -> np.ndarray:
        return self.score_clean([preprocess(t) for t in texts])

    def score_clean(self, clean_texts: Sequence[str]) -> np.ndarray:
        if not clean_texts:
            return np.zeros(0, dtype=np.float64)
        return self.pipeline.predict_proba(clean_texts)[:, self._neg_col].astype(np.float64)


@register_family("tfidf")
def load(bundle_dir: Path, info: ModelInfo) -> TfidfScorer:
    return TfidfScorer(joblib.load(bundle_dir / PIPELINE_FILE), info)
