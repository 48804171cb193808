"""The data profile logged with every training run as ``data_profile.json``: what the run
learnt from and was tested on. Pure: frames in, a JSON-ready dict out."""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from models.preprocess import URL_TOKEN, USER_TOKEN, preprocess, tokens

TOP_NGRAMS = 20
_PLACEHOLDERS = frozenset({URL_TOKEN, USER_TOKEN})


def profile(parts: Mapping[str, pd.DataFrame], other_label: str, top: int = TOP_NGRAMS) -> dict:
    """Profile of the labelled parts of a run (``train``/``val``/``test``, each with
    ``text``, ``sentiment`` and ``label``, 1 = negative).

    Lengths: characters of the stripped raw text, tokens of the preprocessed text.
    N-grams: counted once per post in which they occur, on preprocessed tokens; those
    holding a placeholder (``<user>``, ``<url>``) or made only of English stop words are
    left out, as they say nothing about a class. Ties are broken alphabetically."""
    everything = pd.concat(list(parts.values()), ignore_index=True)
    names = {1: "negative", 0: other_label}
    clean_tokens = [tokens(preprocess(text)) for text in everything["text"]]
    by_class = {
        name: [toks for toks, label in zip(clean_tokens, everything["label"]) if label == value]
        for value, name in names.items()
    }
    return {
        "rows": {name: len(part) for name, part in parts.items()} | {"total": len(everything)},
        "class_balance": _balance(parts, everything, names),
        "sentiments": _counts(everything["sentiment"]),
        "text_length": {
            "chars": _stats([len(text.strip()) for text in everything["text"]]),
            "tokens": _stats([len(toks) for toks in clean_tokens]),
        },
        "top_unigrams": {name: _top(docs, 1, top) for name, docs in by_class.items()},
        "top_bigrams": {name: _top(docs, 2, top) for name, docs in by_class.items()},
    }


def _balance(parts: Mapping[str, pd.DataFrame], everything: pd.DataFrame, names: dict[int, str]) -> dict:
    def one(labels: pd.Series) -> dict:
        counts = {name: int((labels == value).sum()) for value, name in names.items()}
        total = sum(counts.values())
        return {
            "counts": counts,
            "shares": {name: round(n / total, 4) if total else 0.0 for name, n in counts.items()},
        }

    return {"all": one(everything["label"])} | {name: one(part["label"]) for name, part in parts.items()}


def _counts(values: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in sorted(values.value_counts().items())}


def _stats(values: list[int]) -> dict[str, float]:
    if not values:
        return {"min": 0, "p50": 0.0, "mean": 0.0, "p95": 0.0, "max": 0}
    array = np.asarray(values)
    return {
        "min": int(array.min()),
        "p50": round(float(np.percentile(array, 50)), 4),
        "mean": round(float(array.mean()), 4),
        "p95": round(float(np.percentile(array, 95)), 4),
        "max": int(array.max()),
    }


def _top(docs: Iterable[list[str]], n: int, top: int) -> list[dict[str, object]]:
    counter: Counter[str] = Counter()
    for toks in docs:
        counter.update({" ".join(gram) for gram in zip(*(toks[i:] for i in range(n))) if _informative(gram)})
    ranked = sorted(counter.items(), key=lambda item: (-item[1], item[0]))[:top]
    return [{"ngram": gram, "posts": count} for gram, count in ranked]


def _informative(gram: tuple[str, ...]) -> bool:
    return not _PLACEHOLDERS.intersection(gram) and not all(token in ENGLISH_STOP_WORDS for token in gram)
