from __future__ import annotations

import pandas as pd

from training.profile import profile


def _part(rows: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame({
        "text": [text for text, _ in rows],
        "sentiment": [sentiment for _, sentiment in rows],
        "label": [int(sentiment == "negative") for _, sentiment in rows],
        "source": "t",
    })


PARTS = {
    "train": _part([
        ("@united Lost my bag, lost luggage again", "negative"),
        ("@united lost luggage and no refund http://t.co/x", "negative"),
        ("  delayed again  ", "negative"),
        ("@JetBlue great crew, great flight", "positive"),
    ]),
    "val": _part([("it is what it is", "neutral")]),
    "test": _part([("great flight thanks", "positive"), ("worst delay ever", "negative")]),
}


def test_profile_counts_classes_lengths_and_ngrams_exactly():
    result = profile(PARTS, "not_negative", top=3)

    assert result["rows"] == {"train": 4, "val": 1, "test": 2, "total": 7}
    assert result["class_balance"]["all"] == {
        "counts": {"negative": 4, "not_negative": 3},
        "shares": {"negative": 0.5714, "not_negative": 0.4286},
    }
    assert result["class_balance"]["train"]["counts"] == {"negative": 3, "not_negative": 1}
    assert result["class_balance"]["val"]["counts"] == {"negative": 0, "not_negative": 1}
    assert result["class_balance"]["test"]["shares"] == {"negative": 0.5, "not_negative": 0.5}
    assert result["sentiments"] == {"negative": 4, "neutral": 1, "positive": 2}
    # Characters of the stripped raw text: 39, 48, 13, 33, 16, 19, 16 (p95 interpolates
    # between 39 and 48).
    assert result["text_length"]["chars"] == {"min": 13, "p50": 19.0, "mean": 26.2857, "p95": 45.3, "max": 48}
    # Tokens of the preprocessed text: 7, 7, 2, 5, 5, 3, 3.
    assert result["text_length"]["tokens"] == {"min": 2, "p50": 5.0, "mean": 4.5714, "p95": 7.0, "max": 7}
    # Counted once per post ("lost" twice in the first post counts 1); stop words alone
    # ("again", "no", "it is") and placeholders never rank.
    assert result["top_unigrams"] == {
        "negative": [{"ngram": "lost", "posts": 2}, {"ngram": "luggage", "posts": 2}, {"ngram": "bag", "posts": 1}],
        "not_negative": [{"ngram": "flight", "posts": 2}, {"ngram": "great", "posts": 2}, {"ngram": "crew", "posts": 1}],
    }
    assert result["top_bigrams"]["negative"] == [
        {"ngram": "lost luggage", "posts": 2}, {"ngram": "bag lost", "posts": 1}, {"ngram": "delay ever", "posts": 1},
    ]
    assert result["top_bigrams"]["not_negative"] == [
        {"ngram": "great flight", "posts": 2}, {"ngram": "crew great", "posts": 1}, {"ngram": "flight thanks", "posts": 1},
    ]


def test_profile_names_the_other_class_after_the_scheme_and_keeps_empty_classes():
    parts = {"train": _part([("late late late", "negative")]), "val": _part([]), "test": _part([])}

    result = profile(parts, "positive")

    assert result["class_balance"]["all"]["counts"] == {"negative": 1, "positive": 0}
    assert result["class_balance"]["val"] == {"counts": {"negative": 0, "positive": 0}, "shares": {"negative": 0.0, "positive": 0.0}}
    assert result["top_unigrams"] == {"negative": [{"ngram": "late", "posts": 1}], "positive": []}
    assert result["top_bigrams"]["negative"] == [{"ngram": "late late", "posts": 1}]
