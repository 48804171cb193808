from __future__ import annotations

import json

import mlflow
import numpy as np
import pytest

from config.settings import Settings
from models.scorer import ModelInfo
from training import evaluate, tfidf
from training.train import train

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RUN_ARTIFACTS = {"confusion_matrix.png", "roc_curve.png", "data_profile.json", "explanation.json", "model"}


class RecordingScorer:
    """Returns fixed scores and remembers the size of every batch it was asked for."""

    info = ModelInfo(family="fake", scheme="negative_vs_rest")

    def __init__(self):
        self.batches: list[int] = []

    def score_batch(self, texts):
        self.batches.append(len(texts))
        return np.full(len(texts), 0.5)

    score_clean = score_batch


def test_latency_times_single_posts_after_warm_up():
    scorer = RecordingScorer()

    result = evaluate.latency_ms(scorer, [f"post {i}" for i in range(250)])

    assert scorer.batches == [1] * (evaluate.LATENCY_WARMUP + evaluate.LATENCY_POSTS)
    assert set(result) == {"latency_p50_ms", "latency_p95_ms"}
    assert 0 < result["latency_p50_ms"] <= result["latency_p95_ms"]


def test_throughput_scores_full_batches_of_64_cycling_few_texts():
    scorer = RecordingScorer()

    result = evaluate.throughput(scorer, ["a", "b", "c"])

    assert scorer.batches == [64] * (evaluate.THROUGHPUT_BATCHES + 1)
    assert list(result) == ["throughput_batch64_per_s"]
    assert result["throughput_batch64_per_s"] > 0


def test_speed_needs_texts():
    with pytest.raises(ValueError, match="at least one text"):
        evaluate.latency_ms(RecordingScorer(), [])
    with pytest.raises(ValueError, match="at least one text"):
        evaluate.throughput(RecordingScorer(), [])


def test_directory_bytes_sums_nested_files(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.bin").write_bytes(b"x" * 1000)
    (tmp_path / "sub" / "b.bin").write_bytes(b"y" * 234)

    assert evaluate.directory_bytes(tmp_path) == 1234


def test_plots_are_written_as_png(tmp_path):
    labels = np.array([1, 1, 1, 0, 0, 1, 0, 0])
    scores = np.array([0.9, 0.8, 0.3, 0.6, 0.1, 0.7, 0.2, 0.4])

    confusion = evaluate.confusion_png(labels, scores, 0.5, "not_negative", tmp_path / "cm.png")
    roc = evaluate.roc_png(labels, scores, tmp_path / "roc.png")

    for path in (confusion, roc):
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC)
        assert len(data) > 5000  # a drawn figure, not an empty canvas


def test_tfidf_explanation_ranks_terms_by_coefficient_towards_each_class():
    negative = ["awful delay", "awful service", "awful crew today", "delay again awful"]
    positive = ["lovely crew", "lovely flight", "lovely service today", "again lovely"]
    texts, labels = negative + positive, np.array([1] * 4 + [0] * 4)
    params = {**tfidf.PARAMS, "min_df": 1}

    explanation = tfidf.explain(tfidf.fit(texts, labels, seed=0, params=params), top=30)

    assert explanation["method"].startswith("logistic-regression coefficients")
    for side, word in (("towards_negative", "awful"), ("towards_not_negative", "lovely")):
        entries = explanation[side]
        assert len(entries) == 30
        coefficients = [e["coefficient"] for e in entries]
        assert coefficients == sorted(coefficients, reverse=True)
        assert coefficients[-1] > 0
        assert {e["feature"] for e in entries} <= {"word", "char"}
        assert [e["term"] for e in entries if e["feature"] == "word"][0] == word


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One small unregistered training; its run, bundle and downloaded artifacts."""
    home = tmp_path_factory.mktemp("home")
    settings = Settings(home=home, _env_file=None)
    lines: list[str] = []
    result = train("tfidf", settings=settings, limit=400, register=False, progress=lines.append)
    client = mlflow.MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
    folder = home / "downloaded"
    folder.mkdir()
    for name in ("data_profile.json", "explanation.json", "confusion_matrix.png", "roc_curve.png"):
        client.download_artifacts(result.run_id, name, str(folder))
    return client, result, folder, lines


def test_training_logs_speed_and_size_metrics(run):
    client, result, _, lines = run
    metrics = client.get_run(result.run_id).data.metrics

    assert 0 < metrics["latency_p50_ms"] <= metrics["latency_p95_ms"]
    assert metrics["throughput_batch64_per_s"] > 0
    assert metrics["bundle_size_bytes"] == evaluate.directory_bytes(result.bundle_dir) > 0
    assert any(line.startswith("speed: single-post latency p50 ") for line in lines)


def test_training_logs_plots_profile_and_explanation(run):
    client, result, folder, _ = run
    params = client.get_run(result.run_id).data.params

    assert {a.path for a in client.list_artifacts(result.run_id)} == RUN_ARTIFACTS
    for name in ("confusion_matrix.png", "roc_curve.png"):
        assert (folder / name).read_bytes().startswith(PNG_MAGIC)
    profile = json.loads((folder / "data_profile.json").read_text())
    assert profile["rows"] == {
        "train": int(params["n_train"]), "val": int(params["n_val"]), "test": int(params["n_test"]), "total": 400,
    }
    assert set(profile["top_unigrams"]) == {"negative", "not_negative"}
    assert len(profile["top_unigrams"]["negative"]) == 20
    explanation = json.loads((folder / "explanation.json").read_text())
    assert len(explanation["towards_negative"]) == len(explanation["towards_not_negative"]) == 30


def test_training_logs_the_quality_flags_of_cleaning(run):
    client, result, _, lines = run
    params = client.get_run(result.run_id).data.params

    # Flags count the whole cleaned airline data (before --limit): 90 posts under 3
    # tokens, none over 280 characters.
    assert (params["clean_very_short"], params["clean_very_long"]) == ("90", "0")
    assert any("90 very short (< 3 tokens) and 0 very long (> 280 characters), kept" in line for line in lines)


def test_a_family_without_explain_logs_no_explanation(tmp_path, monkeypatch):
    monkeypatch.delattr(tfidf, "explain")
    settings = Settings(home=tmp_path, _env_file=None)

    result = train("tfidf", settings=settings, limit=300, register=False, progress=lambda _: None)

    client = mlflow.MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
    assert {a.path for a in client.list_artifacts(result.run_id)} == RUN_ARTIFACTS - {"explanation.json"}
