from __future__ import annotations

import json
import shutil
import subprocess
import sys

import mlflow
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from badbuzz.cli import cli
from config.settings import Settings
from models.bundle import MANIFEST, ModelError, write_manifest
from models.drift import REFERENCE_FILE
from models.gru import MODEL_FILE, VOCAB_FILE, Vocabulary
from models.preprocess import preprocess
from models.scorer import load_bundle, load_scorer
from training import gru
from training.data import clean, load_data, stratified_subset, to_binary
from training.train import train

NEGATIVE = "@united worst airline ever, lost my bag and 5 hour delay"
POSITIVE = "@JetBlue thank you, wonderful crew and smooth flight"
# Fast enough for a unit test; the shipped PARAMS are exercised by the train() round trip.
SMALL = {**gru.PARAMS, "gru_units": 16, "max_epochs": 2, "batch_size": 32}


@pytest.fixture(scope="module")
def posts() -> pd.DataFrame:
    labelled = to_binary(clean(load_data("airline"))[0], "negative_vs_rest")
    return stratified_subset(labelled, 600, seed=7)


@pytest.fixture(scope="module")
def small(posts, tmp_path_factory):
    """A small fitted network and the bundle saved from it."""
    fitted = gru.fit(posts["text"].tolist(), posts["label"].to_numpy(), 42, SMALL)
    bundle = tmp_path_factory.mktemp("gru-bundle")
    gru.save(fitted, bundle)
    write_manifest(bundle, family="gru", scheme="negative_vs_rest")
    return fitted, bundle


def test_vocabulary_reserves_placeholders_then_orders_by_count_then_alphabet():
    texts = ["late late bag <user>", "bag late zoo", "bag zoo once", "<url>"]

    vocab = gru.build_vocabulary(texts, min_count=2, max_vocab=10, max_len=100)
    capped = gru.build_vocabulary(texts, min_count=2, max_vocab=4)

    assert vocab.ids == {"<user>": 2, "<url>": 3, "bag": 4, "late": 5, "zoo": 6}
    assert vocab.size == 7
    assert capped.ids == {"<user>": 2, "<url>": 3, "bag": 4, "late": 5}


def test_encoding_pads_after_the_post_and_truncates_at_max_len():
    vocab = Vocabulary({"<user>": 2, "<url>": 3, "late": 4, "again": 5}, max_len=4)

    ids = vocab.encode([preprocess("@united LATE again!! http://t.co/x"), "late", "", "so late"])

    assert ids.dtype == np.int32
    assert ids.tolist() == [[2, 4, 5, 3], [4, 0, 0, 0], [0, 0, 0, 0], [1, 4, 0, 0]]
    assert vocab.encode(["late again", "late"]).tolist() == [[4, 5], [4, 0]]
    assert vocab.encode(["late " * 9]).tolist() == [[4, 4, 4, 4]]
    assert vocab.encode(["late again"], width=6).tolist() == [[4, 5, 0, 0, 0, 0]]
    assert vocab.encode([""]).tolist() == [[0]]


def test_vocabulary_file_round_trips_and_refuses_another_layout():
    vocab = Vocabulary({"<user>": 2, "café": 3}, max_len=50)

    assert Vocabulary.from_json(vocab.to_json()) == vocab
    data = json.loads(vocab.to_json())
    assert (data["max_len"], data["padding"], data["pad_id"], data["oov_id"]) == (50, "post", 0, 1)
    with pytest.raises(ValueError, match="'padding': 'pre'"):
        Vocabulary.from_json(json.dumps({**data, "padding": "pre"}))


def test_embeddings_start_from_glove_with_hashtag_fallback_and_zero_pad_rows():
    vocab = Vocabulary({"<user>": 2, "<url>": 3, "the": 4, "#delayed": 5, "zzqxj": 6})
    root = gru.glove_root()
    words = pd.Index(pd.read_parquet(root / "glove_6B_index.parquet")["index"])
    glove = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")

    matrix, coverage = gru.embedding_matrix(vocab, seed=0)

    assert matrix.shape == (7, 50) and matrix.dtype == np.float32
    assert coverage == pytest.approx(2 / 5)
    np.testing.assert_array_equal(matrix[4], glove[words.get_loc("the")])
    np.testing.assert_array_equal(matrix[5], glove[words.get_loc("delayed")])
    assert not matrix[:2].any()
    assert all(matrix[i].any() for i in (2, 3, 6))
    np.testing.assert_array_equal(gru.embedding_matrix(vocab, seed=0)[0], matrix)


def test_balanced_weights_match_scikit_learn():
    assert gru.balanced_weights(np.array([1, 1, 1, 0])) == {0: 2.0, 1: 4 / 6}


def test_onnx_export_matches_keras(small, posts):
    fitted, bundle = small
    scorer = load_bundle(bundle)
    texts = [preprocess(t) for t in posts["text"].iloc[:62]] + ["", "qqqq zzzz xxxx"]

    keras_full = fitted.network.predict(fitted.vocab.encode(texts, width=100), verbose=0)[:, 0]
    keras_trimmed = fitted.network.predict(fitted.vocab.encode(texts), verbose=0)[:, 0]
    served = scorer.score_clean(texts)

    assert served.dtype == np.float64 and served.shape == (64,)
    assert np.abs(served - keras_full).max() < 1e-4
    assert np.abs(keras_trimmed - keras_full).max() < 1e-5
    assert 0 < served.min() and served.max() < 1


def test_a_posts_score_does_not_depend_on_its_batch(small):
    scorer = load_bundle(small[1])
    texts = [NEGATIVE, POSITIVE, "", "just landed", "@united " + "delayed again " * 30]

    together = scorer.score_batch(texts)
    alone = np.array([scorer.score_batch([t])[0] for t in texts])

    np.testing.assert_allclose(together, alone, atol=1e-6)
    np.testing.assert_allclose(scorer.score_batch(texts[::-1]), together[::-1], atol=1e-6)
    assert scorer.score_batch([]).shape == (0,)


def test_bundle_holds_the_onnx_model_and_vocabulary(small):
    fitted, bundle = small

    assert sorted(p.name for p in bundle.iterdir()) == sorted([MANIFEST, MODEL_FILE, VOCAB_FILE])
    assert Vocabulary.from_json((bundle / VOCAB_FILE).read_text(encoding="utf-8")) == fitted.vocab
    assert 1 <= fitted.best_epoch <= fitted.epochs_run <= SMALL["max_epochs"]


def test_serving_a_gru_bundle_never_imports_tensorflow(small):
    script = (
        "import json, sys; from models.scorer import load_bundle; "
        f"s = load_bundle({str(small[1])!r}); p = s.score_batch([{NEGATIVE!r}, 'ok']); "
        "loaded = sorted(m for m in ('tensorflow', 'keras', 'tf2onnx') if m in sys.modules); "
        "print(json.dumps({'n': len(p), 'loaded': loaded}))"
    )

    done = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=120)

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"n": 2, "loaded": []}


def test_score_command_prints_a_gru_bundles_scores_in_input_order(small):
    bundle = small[1]
    texts = [NEGATIVE, POSITIVE, "just landed"]
    expected = load_bundle(bundle).score_batch(texts)
    labels = ["negative" if p >= 0.5 else "not_negative" for p in expected]

    plain = CliRunner().invoke(cli, ["score", "--model", str(bundle), *texts])
    as_json = CliRunner().invoke(cli, ["score", "--model", str(bundle), "--json", "--batch-size", "2", *texts])

    assert plain.exit_code == 0, plain.output
    assert plain.output.splitlines() == [f"{p:.4f}\t{label}" for p, label in zip(expected, labels)]
    assert as_json.exit_code == 0, as_json.output
    assert [json.loads(line) for line in as_json.output.splitlines()] == [
        {"text": t, "p_negative": round(float(p), 6), "label": label} for t, p, label in zip(texts, expected, labels)
    ]


def test_a_bundle_without_its_vocabulary_fails_with_a_clear_error(small, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(small[1], broken)
    (broken / VOCAB_FILE).unlink()

    with pytest.raises(ModelError, match=f"cannot load the gru model at {broken}: .*vocab.json"):
        load_bundle(broken)


def test_training_registers_a_gru_version_that_serves_from_the_registry(tmp_path):
    settings = Settings(home=tmp_path / "home", _env_file=None)
    lines: list[str] = []

    result = train("gru", settings=settings, limit=600, progress=lines.append)
    scorer = load_scorer(
        "models:/badbuzz-sentiment/1", tracking_uri=settings.tracking_uri, cache_dir=tmp_path / "cache"
    )
    texts = [NEGATIVE, POSITIVE, "", "just landed"]
    scores = scorer.score_batch(texts)

    assert (result.version, result.became_champion) == ("1", True)
    assert sorted(p.name for p in result.bundle_dir.iterdir()) == sorted([MANIFEST, MODEL_FILE, VOCAB_FILE, REFERENCE_FILE])
    assert (scorer.info.family, scorer.info.name, scorer.info.version) == ("gru", "badbuzz-sentiment", "1")
    assert scores.dtype == np.float64 and scores.shape == (4,)
    assert ((scores > 0) & (scores < 1)).all()
    np.testing.assert_allclose(scores, [scorer.score_batch([t])[0] for t in texts], atol=1e-6)
    assert result.metrics["test_roc_auc"] > 0.6
    client = mlflow.MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
    run = client.get_run(result.run_id)
    assert (run.data.params["family"], run.data.params["gru_units"], run.data.params["max_len"]) == ("gru", "64", "100")
    pyfunc = mlflow.pyfunc.load_model(client.get_model_version_download_uri("badbuzz-sentiment", "1"))
    out = pyfunc.predict(pd.DataFrame({"text": texts}))
    np.testing.assert_allclose(out["p_negative"].to_numpy(), scores, atol=1e-6)
    assert out["label"].tolist() == [scorer.info.label(p) for p in scores]
    assert "fitting gru on 479 texts" in lines
