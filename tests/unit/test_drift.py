"""Drift against the training reference: histograms, PSI, vocabulary drift, the reference
file, and the drift incident's decisions."""
import json
import math

import numpy as np
import pytest

from alerting.rules import Action, Baseline, Episode, Severity
from models.drift import (
    REFERENCE_FILE,
    DriftReference,
    DriftStatus,
    assess,
    bin_counts,
    build_reference,
    psi,
    read_reference,
    token_counts,
    vocabulary,
    vocabulary_drift,
    write_reference,
)
from models.scorer import ModelInfo
from stream.drift_monitor import DriftThresholds, decide_drift, severity_of, version_key


def test_scores_fall_in_equal_width_bins_with_one_in_the_last():
    counts = bin_counts([0.0, 0.05, 0.1, 0.55, 0.999, 1.0, -0.2, 1.7], bins=10)
    assert counts.tolist() == [3, 1, 0, 0, 0, 1, 0, 0, 0, 3]


def test_psi_of_identical_histograms_is_zero_and_of_a_shift_is_the_formula():
    assert psi([10, 20, 30], [1, 2, 3]) == 0.0
    expected = (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.75 - 0.5) * math.log(0.75 / 0.5)
    assert psi([0.5, 0.5], [25, 75]) == pytest.approx(expected, abs=1e-12)
    # An empty bin is floored, not infinite.
    assert math.isfinite(psi([0, 10], [10, 0]))
    with pytest.raises(ValueError, match="histograms have 2 and 3 bins"):
        psi([1, 1], [1, 1, 1])


def test_vocabulary_keeps_the_tokens_in_most_training_texts():
    texts = ["@united delayed again", "Delayed flight, delayed bag", "great flight", "zebra"]
    # Document frequency: delayed 2, flight 2, <user> 1, again 1, bag 1, great 1, zebra 1; ties by token.
    assert vocabulary(texts, top_n=3) == frozenset({"delayed", "flight", "<user>"})


def test_vocabulary_drift_counts_unknown_tokens_and_names_the_frequent_ones():
    counts = token_counts(["<user> vol retard retard", "retard bagage <url> 1843", "flight vol 1843"])
    drift = vocabulary_drift(counts, frozenset({"flight"}), top=2, min_count=2)
    assert (drift.tokens, drift.oov) == (11, 6)  # placeholders and numbers count as known
    assert drift.oov_rate == pytest.approx(6 / 11)
    assert drift.new_terms == (("retard", 3), ("vol", 2))


def test_reference_is_built_written_and_read_back(tmp_path):
    ref = build_reference(np.array([0.05, 0.15, 0.95, 0.97]), ["bad flight", "bad bag", "good crew"], ["bad crew zzz"], bins=10, top_n=3)
    assert ref.histogram == (0.25, 0.25, 0, 0, 0, 0, 0, 0, 0, 0.5)
    assert ref.vocabulary == frozenset({"bad", "bag", "crew"})
    assert ref.oov_rate == pytest.approx(1 / 3)
    write_reference(tmp_path, ref)
    assert read_reference(tmp_path) == ref
    assert read_reference(tmp_path / "nowhere") is None


def test_a_reference_whose_histogram_does_not_match_its_bins_is_refused(tmp_path):
    (tmp_path / REFERENCE_FILE).write_text(json.dumps({
        "bins": 10, "score_histogram": [0.5, 0.5], "vocabulary": [], "validation_oov_rate": 0, "validation_posts": 2,
    }))
    with pytest.raises(ValueError, match="score_histogram has 2 bins, the reference says 10"):
        read_reference(tmp_path)


REF = DriftReference(4, (0.25, 0.25, 0.25, 0.25), frozenset({"flight"}), 0.1, 100)


def test_a_window_with_too_few_posts_is_not_judged():
    status = assess(REF, [10, 10, 10, 9], tokens=100, oov=90, min_posts=40)
    assert (status.posts, status.psi, status.oov_rate) == (39, None, None)


def test_a_window_is_judged_on_psi_and_oov_rate():
    status = assess(REF, [10, 10, 10, 10], tokens=200, oov=50, new_terms=[("vol", 9)], min_posts=40)
    assert status == DriftStatus(40, 0.0, 0.25, (("vol", 9),))


TH = DriftThresholds(psi=0.25, oov=0.3, resolve_fraction=0.5, cooldown_min=30)


@pytest.mark.parametrize(
    "psi_value, oov, severity",
    [(0.1, 0.1, None), (0.25, 0.1, Severity.WARNING), (0.1, 0.3, Severity.WARNING), (0.5, 0.0, Severity.CRITICAL), (0.0, 0.6, Severity.CRITICAL)],
)
def test_severity_is_warning_at_a_threshold_and_critical_at_twice_it(psi_value, oov, severity):
    assert severity_of(DriftStatus(500, psi_value, oov), TH) is severity


def test_drift_opens_escalates_resolves_and_reopens():
    calm, shifted, worse = DriftStatus(500, 0.05, 0.05), DriftStatus(500, 0.3, 0.1), DriftStatus(500, 0.3, 0.7)
    assert decide_drift(calm, None, 100, TH) is None
    opened = decide_drift(shifted, None, 100, TH)
    assert (opened.action, opened.severity) == (Action.OPEN, Severity.WARNING)
    episode = Episode(Severity.WARNING, Baseline(None, None), 100)
    assert decide_drift(shifted, episode, 101, TH) is None
    escalated = decide_drift(worse, episode, 102, TH)
    assert (escalated.action, escalated.severity) == (Action.ESCALATE, Severity.CRITICAL)
    # Both figures must fall below half their thresholds to resolve.
    assert decide_drift(DriftStatus(500, 0.1, 0.2), episode, 103, TH) is None
    resolved = decide_drift(DriftStatus(500, 0.1, 0.1), episode, 103, TH)
    assert resolved.action is Action.RESOLVE
    cooling = Episode(Severity.WARNING, Baseline(None, None), 100, resolved_minute=103)
    assert decide_drift(shifted, cooling, 110, TH).action is Action.REOPEN
    assert decide_drift(shifted, cooling, 133, TH).action is Action.OPEN


def test_too_few_posts_change_nothing_even_while_open():
    episode = Episode(Severity.WARNING, Baseline(None, None), 100)
    assert decide_drift(DriftStatus(12, None, None), episode, 101, TH) is None


def test_version_key_is_the_registry_version_or_a_slug_of_the_path():
    assert version_key(ModelInfo("tfidf", "negative_vs_rest", version="7", uri="models:/m@champion")) == "7"
    assert version_key(ModelInfo("tfidf", "negative_vs_rest", uri="/srv/models/tfidf-1", bundle_dir="/srv/models/tfidf-1")) == "path--srv-models-tfidf-1"
