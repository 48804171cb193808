"""Why the console says a post is negative: TF-IDF contributions add up to the model's
own decision, and occlusion reports the score each word's removal takes away."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logit

from console.scoring import explain
from models import tfidf as serving
from models.preprocess import preprocess
from models.scorer import ModelInfo
from training.data import load_data
from training.tfidf import fit

INFO = ModelInfo(family="tfidf", scheme="negative_vs_rest", threshold=0.4)


@pytest.fixture(scope="module")
def scorer():
    data = load_data("airline").sample(1500, random_state=4)
    labels = (data["sentiment"] == "negative").astype(int).to_numpy()
    return serving.TfidfScorer(fit(data["text"].tolist(), labels, seed=1), INFO)


def test_tfidf_contributions_are_coefficient_times_weight_shared_among_words(scorer):
    text = "My flight was cancelled and the delay was awful @united http://t.co/x"
    [result] = explain(scorer, [text], top=10_000)
    assert result.method == "tfidf_contribution"
    assert result.p_negative == pytest.approx(scorer.score_batch([text])[0])
    assert result.label == ("negative" if result.p_negative >= 0.4 else "not_negative")
    # Every feature's share is accounted for: the shares plus the intercept are the log-odds.
    classifier = scorer.pipeline.named_steps["classifier"]
    total = sum(t["contribution"] for t in result.top_terms) + float(classifier.intercept_[0])
    assert total == pytest.approx(float(logit(result.p_negative)), abs=1e-3)
    terms = {t["term"]: t["contribution"] for t in result.top_terms}
    assert terms["cancelled"] > 0 and "<user>" in terms and "united" not in terms


def test_the_top_terms_are_the_largest_shares_first(scorer):
    [result] = explain(scorer, ["cancelled cancelled delayed lost luggage, thanks for nothing"])
    magnitudes = [abs(t["contribution"]) for t in result.top_terms]
    assert len(result.top_terms) == 5 and magnitudes == sorted(magnitudes, reverse=True)
    # Punctuation is not part of a term: the characters of "luggage," count for "luggage".
    assert {"cancelled", "delayed"} <= {t["term"] for t in result.top_terms if t["contribution"] > 0}
    assert all("," not in t["term"] for t in explain(scorer, ["lost luggage, again"], top=100)[0].top_terms)


class Keyword:
    """A stand-in neural model: P(negative) is 0.9 with the word 'late' in the post, else 0.2."""

    info = ModelInfo(family="gru", scheme="negative_vs_rest", threshold=0.5)

    def score_clean(self, clean_texts):
        return np.array([0.9 if "late" in t.split() else 0.2 for t in clean_texts])


def test_other_families_are_explained_by_occlusion():
    [result, empty] = explain(Keyword(), ["The plane was LATE again", ""])
    assert result.method == "occlusion" and result.label == "negative" and result.p_negative == 0.9
    assert result.top_terms == [{"term": "late", "contribution": pytest.approx(0.7)}]
    assert empty.top_terms == [] and empty.label == "not_negative"
    assert preprocess("The plane was LATE again").split()[3] == "late"
