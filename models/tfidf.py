"""TF-IDF + logistic regression: a scikit-learn pipeline over preprocessed text.

Serving computes the pipeline's score itself, with the same arithmetic in the same order,
so the result is bit-for-bit what ``predict_proba`` returns. Two profiles drove this:
in the stream, scikit-learn's character n-gram counting (a Python loop over ~400 n-grams
per post) was the largest cost of the whole worker; for a single post, scikit-learn's
input validation around five calls took most of a millisecond. Character n-grams of a
``char_wb`` vectorizer never cross a word boundary, so a post's counts are the sum of its
words' counts, and words repeat: each word's vocabulary indices are computed once, with
scikit-learn's own n-gram function, and cached.

The bundle holds plain data, never a pickle: a worker hot-swaps whatever the registry
serves, and unpickling it would run whatever code it carries. ``tfidf.json`` has the
pipeline's settings and each vectorizer's vocabulary; ``idf-<i>.npy``, ``coef.npy``,
``intercept.npy`` and ``classes.npy`` the fitted numbers, read without pickle support.
Serving rebuilds the scikit-learn pipeline from them (the reference its own arithmetic is
checked against, and the fallback)."""
from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import expit
from sklearn.feature_extraction.text import TfidfTransformer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline

from models.bundle import ModelError
from models.preprocess import preprocess, tokens
from models.scorer import ModelInfo, register_family

SETTINGS_FILE = "tfidf.json"
COEF_FILE = "coef.npy"
INTERCEPT_FILE = "intercept.npy"
CLASSES_FILE = "classes.npy"
IDF_FILE = "idf-{}.npy"  # one per vectorizer of the union that weights by idf
# What bundles held before the plain format: refused, never opened.
PICKLE_FILE = "pipeline.joblib"
FORMAT = 1
# The functions a vectorizer may be configured with, by name: a bundle can only pick one
# of these, never name code to import.
FUNCTIONS: dict[str, Callable] = {"models.preprocess.tokens": tokens}

log = logging.getLogger(__name__)

# Distinct words kept per vectorizer (a few tens of MB); past that the cache starts over,
# which costs a little speed and never correctness.
WORD_CACHE_LIMIT = 100_000

# (row of each occurrence, vocabulary column of each occurrence), repeats included.
Occurrences = tuple[np.ndarray, np.ndarray]


class AnalyzerCounts:
    """A fitted vectorizer's vocabulary occurrences, found with its own analyzer exactly as
    ``CountVectorizer.transform`` finds them."""

    def __init__(self, vectorizer: TfidfVectorizer):
        self._analyze = vectorizer.build_analyzer()
        self._vocabulary = vectorizer.vocabulary_

    def occurrences(self, texts: Sequence[str]) -> Occurrences:
        lookup, analyze = self._vocabulary.get, self._analyze
        columns: list[int] = []
        lengths: list[int] = []
        for text in texts:
            found = [i for i in map(lookup, analyze(text)) if i is not None]
            columns += found
            lengths.append(len(found))
        return np.repeat(np.arange(len(texts), dtype=np.int64), lengths), np.asarray(columns, dtype=np.int64)


class CharWordCounts:
    """The same for a ``char_wb`` vectorizer over text taken as it is, from per-word cached
    vocabulary indices."""

    def __init__(self, vectorizer: TfidfVectorizer):
        self._ngrams = vectorizer._char_wb_ngrams
        self._vocabulary = vectorizer.vocabulary_
        self._words: dict[str, np.ndarray] = {}

    def _indices(self, word: str) -> np.ndarray:
        if len(self._words) >= WORD_CACHE_LIMIT:
            self._words.clear()
        vocabulary = self._vocabulary
        found = np.fromiter((vocabulary[g] for g in self._ngrams(word) if g in vocabulary), dtype=np.int64)
        self._words[word] = found
        return found

    def warm(self, words: Iterable[str]) -> None:
        """Look words up ahead of traffic, up to half the cache."""
        for word in itertools.islice(words, WORD_CACHE_LIMIT // 2):
            if word not in self._words:
                self._indices(word)

    def occurrences(self, texts: Sequence[str]) -> Occurrences:
        cached, miss = self._words.get, self._indices
        columns: list[np.ndarray] = []
        owners: list[int] = []
        for row, text in enumerate(texts):
            for word in text.split():
                indices = cached(word)
                columns.append(miss(word) if indices is None else indices)
                owners.append(row)
        if not columns:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        lengths = np.fromiter(map(len, columns), dtype=np.int64, count=len(columns))
        return np.repeat(np.asarray(owners, dtype=np.int64), lengths), np.concatenate(columns)

    @staticmethod
    def applies_to(vectorizer: TfidfVectorizer) -> bool:
        """Character n-grams within words of text taken as it is (what training fits)."""
        return (
            vectorizer.analyzer == "char_wb"
            and vectorizer.input == "content"
            and not vectorizer.lowercase
            and vectorizer.strip_accents is None
            and vectorizer.preprocessor is None
        )


class TfidfPart:
    """One vectorizer of the union: ``TfidfVectorizer.transform`` as (row, column, value)
    triples sorted by row then column, in the vectorizer's dtype, step by step as
    scikit-learn computes them (sublinear tf, idf, then l2 row norms summed in double)."""

    def __init__(self, vectorizer: TfidfVectorizer, offset: int):
        self.counts = CharWordCounts(vectorizer) if CharWordCounts.applies_to(vectorizer) else AnalyzerCounts(vectorizer)
        self.analyzer = vectorizer.analyzer
        self.vocabulary = vectorizer.vocabulary_
        self.offset = offset
        self.width = len(vectorizer.vocabulary_)
        self.dtype = np.dtype(vectorizer.dtype)
        # Counting reads the vectorizer at transform time; the weighting is the transformer
        # fitted with it, whatever set_params changed on the vectorizer since.
        self.binary = vectorizer.binary
        weighting = vectorizer._tfidf
        self.sublinear = weighting.sublinear_tf
        self.idf = weighting.idf_ if hasattr(weighting, "idf_") else None
        self.normalise = weighting.norm == "l2"

    @staticmethod
    def applies_to(vectorizer: object) -> bool:
        return (
            isinstance(vectorizer, TfidfVectorizer)
            and hasattr(vectorizer, "_tfidf")
            and vectorizer._tfidf.norm in ("l2", None)
            and np.dtype(vectorizer.dtype) in (np.float32, np.float64)
        )

    def features(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows, cols = self.counts.occurrences(texts)
        keys, counts = np.unique(rows * self.width + cols, return_counts=True)
        rows, cols = keys // self.width, keys % self.width
        data = np.ones(len(keys), dtype=self.dtype) if self.binary else counts.astype(self.dtype)
        if self.sublinear:
            np.log(data, data)
            data += 1.0
        if self.idf is not None:
            data *= self.idf[cols]
        if self.normalise:
            squares = (data * data).astype(np.float64)
            norms = np.sqrt(np.bincount(rows, weights=squares, minlength=len(texts)))
            norms[norms == 0.0] = 1.0
            data = (data / norms[rows]).astype(self.dtype)
        return rows, cols + self.offset, data


class LinearScore:
    """P(label 1) of a binary logistic regression over a union of TF-IDF vectorizers:
    the decision function accumulated per row in the order scipy's sparse product uses
    (columns ascending, parts in union order), then the logistic function."""

    def __init__(self, parts: list[TfidfPart], classifier: LogisticRegression):
        self.parts = parts
        self.coef = classifier.coef_.ravel().astype(np.float64)
        self.intercept = float(classifier.intercept_[0])

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        pieces = [part.features(texts) for part in self.parts]
        rows = np.concatenate([p[0] for p in pieces])
        order = np.argsort(rows, kind="stable")
        cols = np.concatenate([p[1] for p in pieces])[order]
        data = np.concatenate([p[2].astype(np.float64) for p in pieces])[order]
        decision = np.bincount(rows[order], weights=data * self.coef[cols], minlength=len(texts)) + self.intercept
        return expit(decision)


def fast_score(pipeline) -> Callable[[Sequence[str]], np.ndarray] | None:
    """P(label 1) computed without scikit-learn, or None when the pipeline is not a union
    of TF-IDF vectorizers under a binary logistic regression that this module reproduces."""
    if len(pipeline.steps) != 2 or not isinstance(pipeline.steps[0][1], FeatureUnion):
        return None
    union, classifier = pipeline.steps[0][1], pipeline.steps[1][1]
    if union.transformer_weights or not isinstance(classifier, LogisticRegression) or len(classifier.classes_) != 2:
        return None
    # A float32 regression (lbfgs on float32 features) takes its dot products in float32.
    if classifier.coef_.dtype != np.float64 or np.asarray(classifier.intercept_).dtype != np.float64:
        return None
    vectorizers = [part for _, part in union.transformer_list if part not in ("drop", "passthrough")]
    if len(vectorizers) != len(union.transformer_list) or not all(TfidfPart.applies_to(v) for v in vectorizers):
        return None
    parts, offset = [], 0
    for vectorizer in vectorizers:
        parts.append(TfidfPart(vectorizer, offset))
        offset += parts[-1].width
    if offset != classifier.coef_.shape[1]:
        return None
    _warm(parts)
    score = LinearScore(parts, classifier)
    # The arithmetic mirrors this scikit-learn's code; a release (or a scipy build) that
    # computes differently must not change a score silently.
    probes = _probe_texts(parts)
    if not np.array_equal(score(probes), pipeline.predict_proba(probes)[:, 1]):
        log.warning("TF-IDF fast path differs from scikit-learn on this installation; scoring through scikit-learn")
        return None
    return score


def _warm(parts: list[TfidfPart]) -> None:
    """A worker that starts during a storm (a restart, a scale-out) should score at full
    speed from its first batch: the single words of the model's own word vocabulary, a
    few thousand, get their character n-grams looked up at load, in tens of milliseconds."""
    words = sorted({
        t for p in parts if p.analyzer == "word" for t in p.vocabulary if isinstance(t, str) and t.split() == [t]
    })
    for part in parts:
        if isinstance(part.counts, CharWordCounts):
            part.counts.warm(words)


def _probe_texts(parts: list[TfidfPart], per_text: int = 8) -> list[str]:
    """Texts made of the model's own features (so every part has non-zero rows), an empty
    one and one the vocabulary does not know."""
    features = sorted(t for p in parts for t in p.vocabulary if isinstance(t, str))[:: max(1, sum(p.width for p in parts) // 200)]
    texts = [" ".join(features[i : i + per_text]) for i in range(0, len(features), per_text)]
    return [*texts, "", "zqxj"]


class TfidfScorer:
    def __init__(self, pipeline, info: ModelInfo):
        self.pipeline = pipeline
        self.info = info
        # predict_proba's columns follow classes_; label 1 means negative.
        self._neg_col = list(pipeline.classes_).index(1)
        self._fast = fast_score(pipeline)

    def score_batch(self, texts: Sequence[str]) -> np.ndarray:
        return self.score_clean([preprocess(t) for t in texts])

    def score_clean(self, clean_texts: Sequence[str]) -> np.ndarray:
        if not clean_texts:
            return np.zeros(0, dtype=np.float64)
        if self._fast is None:
            return self.pipeline.predict_proba(clean_texts)[:, self._neg_col].astype(np.float64)
        positive = self._fast(clean_texts)
        # predict_proba's first column is 1 - P(classes_[1]), computed the same way.
        return positive if self._neg_col == 1 else 1 - positive


def _plain_param(name: str, value: Any) -> Any:
    if name == "dtype":
        return np.dtype(value).name
    if isinstance(value, tuple):
        value = list(value)
    if callable(value):
        known = [key for key, function in FUNCTIONS.items() if function is value]
        if not known:
            raise ValueError(f"its {name} is {value!r}, not one of the functions a bundle can name ({', '.join(FUNCTIONS)})")
        return {"function": known[0]}
    if value is None or isinstance(value, (str, bool, int, float)) or (isinstance(value, list) and all(isinstance(v, (str, int)) for v in value)):
        return value
    raise ValueError(f"its {name} {value!r} cannot be written as plain data")


def _param(name: str, value: Any) -> Any:
    if name == "dtype":
        return np.dtype(value).type
    if name == "ngram_range":
        return tuple(value)
    if isinstance(value, dict):
        if value.get("function") not in FUNCTIONS:
            raise ValueError(f"its {name} names {value.get('function')!r}, not one of {', '.join(FUNCTIONS)}")
        return FUNCTIONS[value["function"]]
    return value


def write_pipeline(pipeline: Pipeline, bundle_dir: Path) -> None:
    """Save a fitted pipeline, a union of TF-IDF vectorizers under a binary logistic
    regression, as plain data; ValueError for any other pipeline."""
    steps = getattr(pipeline, "steps", [])
    if len(steps) != 2 or not isinstance(steps[0][1], FeatureUnion) or not isinstance(steps[1][1], LogisticRegression):
        raise ValueError("a TF-IDF bundle holds a FeatureUnion of TfidfVectorizers then a LogisticRegression")
    (union_name, union), (classifier_name, classifier) = steps
    if len(classifier.classes_) != 2:
        raise ValueError("a TF-IDF bundle holds a binary logistic regression")
    parts = []
    arrays = {COEF_FILE: classifier.coef_, INTERCEPT_FILE: classifier.intercept_, CLASSES_FILE: classifier.classes_}
    for index, (name, vectorizer) in enumerate(union.transformer_list):
        if not isinstance(vectorizer, TfidfVectorizer):
            raise ValueError(f"union part {name!r} is not a TfidfVectorizer")
        try:
            params = {k: _plain_param(k, v) for k, v in vectorizer.get_params().items() if k != "vocabulary"}
        except ValueError as exc:
            raise ValueError(f"union part {name!r} cannot be saved: {exc}") from None
        terms = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.__getitem__)
        if not all(isinstance(t, str) for t in terms):
            raise ValueError(f"union part {name!r} has non-text features")
        weighting = vectorizer._tfidf
        if hasattr(weighting, "idf_"):
            arrays[IDF_FILE.format(index)] = weighting.idf_
        parts.append({"name": name, "params": params, "weighting": weighting.get_params(), "vocabulary": terms})
    settings = {
        "format": FORMAT,
        "steps": [union_name, classifier_name],
        "transformer_weights": union.transformer_weights,
        "parts": parts,
    }
    text = json.dumps(settings, ensure_ascii=False)
    for file, values in arrays.items():
        if values.dtype.hasobject:
            raise ValueError(f"{file.split('.')[0]} holds Python objects ({values.dtype}), not plain numbers or text")
    (bundle_dir / SETTINGS_FILE).write_text(text, encoding="utf-8")
    for file, values in arrays.items():
        np.save(bundle_dir / file, values, allow_pickle=False)


def read_pipeline(bundle_dir: Path) -> Pipeline:
    """The fitted pipeline that ``write_pipeline`` saved, rebuilt from its plain data."""
    if not (bundle_dir / SETTINGS_FILE).is_file() and (bundle_dir / PICKLE_FILE).is_file():
        raise ModelError(f"model at {bundle_dir} is a pickled TF-IDF bundle ({PICKLE_FILE}), which is never loaded: retrain it")
    try:
        settings = json.loads((bundle_dir / SETTINGS_FILE).read_text(encoding="utf-8"))
        if settings.get("format") != FORMAT:
            raise ValueError(f"format {settings.get('format')!r}, this code reads format {FORMAT}")
        vectorizers = [(p["name"], _vectorizer(p, bundle_dir / IDF_FILE.format(i))) for i, p in enumerate(settings["parts"])]
        classifier = LogisticRegression()
        classifier.coef_, classifier.intercept_, classifier.classes_ = (
            np.load(bundle_dir / file, allow_pickle=False) for file in (COEF_FILE, INTERCEPT_FILE, CLASSES_FILE)
        )
        width = sum(len(v.vocabulary_) for _, v in vectorizers)
        if classifier.coef_.shape != (1, width) or classifier.intercept_.shape != (1,) or classifier.classes_.shape != (2,):
            raise ValueError(
                f"coefficients {classifier.coef_.shape}, intercept {classifier.intercept_.shape} and classes "
                f"{classifier.classes_.shape} do not fit a binary regression over {width} features"
            )
        classifier.n_features_in_ = width
        union_name, classifier_name = settings["steps"]
        union = FeatureUnion(vectorizers, transformer_weights=settings["transformer_weights"])
        pipeline = Pipeline([(union_name, union), (classifier_name, classifier)])
        # Settings scikit-learn rejects fail here, at load, rather than on the first post.
        pipeline.predict_proba(["", "a b"])
        return pipeline
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelError(f"model at {bundle_dir} is not a readable TF-IDF bundle: {exc}") from None


def _vectorizer(part: dict, idf_path: Path) -> TfidfVectorizer:
    vectorizer = TfidfVectorizer(**{k: _param(k, v) for k, v in part["params"].items()})
    terms = part["vocabulary"]
    if not all(isinstance(t, str) for t in terms) or len(set(terms)) != len(terms):
        raise ValueError(f"the vocabulary of {part['name']!r} is not a list of distinct terms")
    vectorizer.vocabulary_ = {t: i for i, t in enumerate(terms)}
    vectorizer.fixed_vocabulary_ = False
    weighting = TfidfTransformer(**part["weighting"])
    weighting.n_features_in_ = len(terms)
    if weighting.use_idf:
        idf = np.load(idf_path, allow_pickle=False)
        if idf.shape != (len(terms),) or idf.dtype not in (np.float32, np.float64):
            raise ValueError(f"the idf of {part['name']!r} is {idf.dtype} {idf.shape}, for {len(terms)} terms")
        weighting.idf_ = idf
    vectorizer._tfidf = weighting
    return vectorizer


@register_family("tfidf")
def load(bundle_dir: Path, info: ModelInfo) -> TfidfScorer:
    return TfidfScorer(read_pipeline(bundle_dir), info)
