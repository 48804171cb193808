"""Scoring for people: P(negative), the label at the model's threshold, and the terms
that pushed the score, for the champion and (while the alias exists) the challenger.

Why a score: a TF-IDF model is linear, so each feature's share of the decision is its
coefficient times its TF-IDF weight (in log-odds); character n-grams are shared out
among the words they occur in. Any other family is explained by occlusion: how much
P(negative) drops when one word is taken out of the post."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from config.settings import Settings
from models.bundle import ModelError
from models.preprocess import preprocess, tokens
from models.registry import ALIASES, CHAMPION, ModelRegistry
from models.scorer import Scorer, load_scorer

log = logging.getLogger(__name__)

TOP_TERMS = 5
# Occlusion scores the post once per word: longer posts are explained by their first words.
MAX_OCCLUDED_WORDS = 64


@dataclass(frozen=True)
class Explained:
    p_negative: float
    label: str
    top_terms: list[dict]
    method: str

    def to_dict(self) -> dict:
        return {"p_negative": round(self.p_negative, 6), "label": self.label, "top_terms": self.top_terms, "method": self.method}


def _linear_parts(scorer: Scorer):
    """(vectorizers with their coefficient slices, sign) when the scorer is a TF-IDF union
    under a binary logistic regression; None otherwise."""
    pipeline = getattr(scorer, "pipeline", None)
    steps = getattr(pipeline, "steps", None)
    if not steps or len(steps) != 2 or not hasattr(steps[0][1], "transformer_list") or not hasattr(steps[1][1], "coef_"):
        return None
    union, classifier = steps[0][1], steps[1][1]
    coef = np.asarray(classifier.coef_).ravel()
    if len(classifier.classes_) != 2 or union.transformer_weights:
        return None
    # Positive contributions push toward "negative" whichever column that class is.
    sign = 1.0 if list(classifier.classes_).index(1) == 1 else -1.0
    parts, offset = [], 0
    for _, vectorizer in union.transformer_list:
        width = len(vectorizer.vocabulary_)
        parts.append((vectorizer, coef[offset : offset + width]))
        offset += width
    return (parts, sign) if offset == len(coef) else None


class TermNames:
    """Feature index -> name per vectorizer, built once per model (the character vocabulary
    is large; a console explains many posts with one model)."""

    def __init__(self):
        self._names: dict[int, list[str]] = {}

    def of(self, vectorizer) -> list[str]:
        key = id(vectorizer)
        if key not in self._names:
            names = [""] * len(vectorizer.vocabulary_)
            for term, index in vectorizer.vocabulary_.items():
                names[index] = term
            self._names[key] = names
        return self._names[key]


def _linear_terms(clean: str, parts, sign: float, names: TermNames) -> dict[str, float]:
    words = clean.split()
    shares: dict[str, float] = {}
    for vectorizer, coef in parts:
        row = vectorizer.transform([clean])
        vocabulary = names.of(vectorizer)
        for index, weight in zip(row.indices, row.data):
            contribution = sign * float(coef[index]) * float(weight)
            feature = vocabulary[index]
            if vectorizer.analyzer == "char_wb":
                # char_wb takes its n-grams from each whitespace-separated word padded with spaces.
                # Named by the word's tokens, as the word features are ("luggage," is "luggage").
                owners = [t for w in words if feature in f" {w} " for t in (tokens(w) or [w])]
                for word in owners:
                    shares[word] = shares.get(word, 0.0) + contribution / len(owners)
            else:
                shares[feature] = shares.get(feature, 0.0) + contribution
    return shares


def _occlusion_terms(scorer: Scorer, clean: str, base: float) -> dict[str, float]:
    words = clean.split()[:MAX_OCCLUDED_WORDS]
    if not words:
        return {}
    rest = clean.split()[MAX_OCCLUDED_WORDS:]
    variants = [" ".join([*words[:i], *words[i + 1 :], *rest]) for i in range(len(words))]
    scores = scorer.score_clean(variants)
    drops: dict[str, float] = {}
    for word, score in zip(words, scores):
        drops[word] = max(drops.get(word, float("-inf")), base - float(score))
    return drops


def _top(shares: dict[str, float], k: int) -> list[dict]:
    ranked = sorted(shares.items(), key=lambda kv: (-abs(kv[1]), kv[0]))[:k]
    return [{"term": term, "contribution": round(value, 6)} for term, value in ranked if value != 0.0]


def explain(scorer: Scorer, texts: Sequence[str], names: TermNames | None = None, *, top: int = TOP_TERMS) -> list[Explained]:
    clean = [preprocess(t) for t in texts]
    scores = scorer.score_clean(clean)
    linear = _linear_parts(scorer)
    out = []
    for text, score in zip(clean, scores):
        if linear is not None:
            terms, method = _top(_linear_terms(text, *linear, names or TermNames()), top), "tfidf_contribution"
        else:
            terms, method = _top(_occlusion_terms(scorer, text, float(score)), top), "occlusion"
        out.append(Explained(float(score), scorer.info.label(float(score)), terms, method))
    return out


def describe(scorer: Scorer) -> dict:
    info = scorer.info
    return {"name": info.name, "version": info.version, "family": info.family, "threshold": info.threshold, "display": info.display}


class Models:
    """The champion and challenger a console scores with, re-read from the registry at
    most every ``BADBUZZ_MODEL_POLL_S`` (a pinned ``BADBUZZ_MODEL_URI`` is the champion
    and there is no challenger). Blocking: call it from a thread."""

    def __init__(self, settings: Settings, *, clock=time.monotonic):
        self.settings = settings
        self._clock = clock
        self._lock = threading.Lock()
        self._checked: float | None = None
        self._loaded: dict[str, tuple[str, Scorer, TermNames]] = {}  # alias -> (version, scorer, names)
        self._current: dict[str, tuple[Scorer, TermNames]] = {}
        self._error = ""

    def current(self) -> dict[str, tuple[Scorer, TermNames]]:
        with self._lock:
            due = self._checked is None or (self.settings.model_poll_s > 0 and self._clock() - self._checked >= self.settings.model_poll_s)
            if due:
                self._refresh()
                self._checked = self._clock()
            if "champion" not in self._current:
                self._checked = None
                raise ModelError(self._error or "no champion model")
            return dict(self._current)

    def display(self) -> str:
        """How charts name the champion: the one loaded last, without asking the registry."""
        champion = self._current.get("champion")
        return "" if champion is None else champion[0].info.display

    def _refresh(self) -> None:
        s = self.settings
        cache = s.home / "model-cache"
        if s.model_uri:
            if "champion" not in self._current:
                try:
                    self._current = {"champion": (load_scorer(s.model_uri, tracking_uri=s.tracking_uri, cache_dir=cache), TermNames())}
                except ModelError as exc:
                    self._error = str(exc)
            return
        versions = self._alias_versions()
        if versions is None:
            return
        current = {}
        for alias in ALIASES:
            version = versions.get(alias)
            if version is None:
                continue
            loaded = self._loaded.get(alias)
            if loaded is None or loaded[0] != version:
                try:
                    scorer = load_scorer(f"models:/{s.model_name}/{version}", tracking_uri=s.tracking_uri, cache_dir=cache)
                except ModelError as exc:
                    self._error = str(exc)
                    log.warning("cannot load the %s (version %s): %s", alias, version, exc)
                    continue
                loaded = self._loaded[alias] = (version, scorer, TermNames())
            current[alias] = (loaded[1], loaded[2])
        self._current = current

    def _alias_versions(self) -> dict[str, str] | None:
        s = self.settings
        try:
            aliases = ModelRegistry.of(s).aliases()
        except ValueError as exc:
            self._error = str(exc)
            log.warning("%s", self._error)
            return None
        if CHAMPION not in aliases:
            self._error = f"{s.model_name} has no champion alias"
        return {alias: aliases[alias] for alias in ALIASES if alias in aliases}
