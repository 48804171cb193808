"""The transformer family: fine-tuning, ONNX export and int8 quantisation, serving parity,
and a training round trip through MLflow. Fine-tunes stay tiny (240 posts, one epoch, 32
tokens): these tests check the plumbing and the graphs' agreement, not model quality."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from transformers import AutoTokenizer

import models as models_package
from badbuzz.cli import cli
from config.settings import Settings
from models import transformer as serving
from models.bundle import MANIFEST, ModelError, write_manifest
from models.preprocess import preprocess
from models.scorer import ModelInfo, load_bundle, load_scorer
from training import transformer as tt
from training.data import clean, load_data, stratified_subset, to_binary
from training.train import train

SMALL = {**tt.PARAMS, "epochs": 1, "max_len": 32}
NEGATIVE = "@united worst airline ever, lost my bag and 5 hour delay"
POSITIVE = "@JetBlue thank you, wonderful crew and smooth flight"
# Edge cases for the tokenizer: placeholders, hashtags, emoji, accents, HTML entities,
# an empty post, and one longer than the 32-token limit.
SAMPLES = [
    NEGATIVE,
    POSITIVE,
    "@AmericanAir #fail flight AA123 cancelled http://t.co/xyz &amp; no refund 😡😡",
    "Café au lait at 30,000 ft — merci @VirginAmerica!!! sooooo good",
    "",
    "   ",
    "word " * 60,
    "don't you dare lose my luggage again @SouthwestAir, I'm done; 2hrs on hold...",
]


@pytest.fixture(scope="module")
def airline():
    cleaned, _ = clean(load_data("airline"))
    return to_binary(cleaned, "negative_vs_positive")


@pytest.fixture(scope="module")
def tuned(airline) -> tt.FineTuned:
    subset = stratified_subset(airline, 240, seed=7)
    return tt.fit(subset["text"].tolist(), subset["label"].to_numpy(), 42, SMALL)


@pytest.fixture(scope="module")
def bundle(tuned, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bundle")
    tt.save(tuned, folder)
    write_manifest(folder, family="transformer", scheme="negative_vs_positive")
    return folder


@pytest.fixture(scope="module")
def parity_batch(airline) -> list[str]:
    """64 clean posts of varied length: real airline posts plus the edge cases."""
    posts = stratified_subset(airline, 56, seed=11)["text"].tolist() + SAMPLES
    return [preprocess(t) for t in posts]


@pytest.fixture(scope="module")
def graphs(tuned, tmp_path_factory):
    folder = tmp_path_factory.mktemp("graphs")
    tt.export_onnx(tuned, folder / "model.onnx")
    kept = tt.quantize(folder / "model.onnx", folder / "model.int8.onnx", tuned.fp32_matmuls)
    return folder, kept


def _fp32_scorer(tuned: tt.FineTuned, graphs, bundle) -> serving.TransformerScorer:
    tokenizer = serving.read_tokenizer(bundle / serving.TOKENIZER_FILE)
    session = serving.open_session(graphs[0] / "model.onnx")
    return serving.TransformerScorer(session, tokenizer, tuned.config, ModelInfo("transformer", "negative_vs_positive"))


def test_onnx_fp32_and_int8_agree_with_torch(tuned, graphs, bundle, parity_batch):
    expected = tt.torch_p_negative(tuned, parity_batch)
    fp32 = _fp32_scorer(tuned, graphs, bundle)
    int8 = load_bundle(bundle)

    fp32_scores = fp32.score_clean(parity_batch)
    int8_scores = int8.score_clean(parity_batch)

    assert np.abs(fp32_scores - expected).max() < 1e-4
    # This barely trained model keeps its logits small, and int8 moves its P(negative) by
    # under 0.01. A trained model's confident logits move further: on the 1,080 test posts
    # the full negative_vs_positive model moved by 0.0025 on average, 0.05 at the 99th
    # percentile and 0.21 at most, flipping 0.4% of labels and no accuracy (docs/models.md).
    int8_error = np.abs(int8_scores - expected)
    assert int8_error.mean() < 0.01
    assert int8_error.max() < 0.05
    assert np.mean((int8_scores >= 0.5) == (expected >= 0.5)) >= 0.95


def test_quantisation_keeps_the_first_two_ffn_down_projections_in_fp32(graphs):
    assert graphs[1] == [
        "/model/bert/encoder/layer.0/output/dense/MatMul", "/model/bert/encoder/layer.1/output/dense/MatMul",
    ]


def test_the_bundle_ships_only_the_int8_graph_the_tokenizer_and_its_config(tuned, bundle):
    assert sorted(p.name for p in bundle.iterdir()) == [MANIFEST, "model.int8.onnx", "tokenizer.json", "transformer.json"]
    config = json.loads((bundle / "transformer.json").read_text())
    assert config == {
        "max_len": 32, "pad_id": 0, "negative_index": 1,
        "inputs": ["input_ids", "attention_mask", "token_type_ids"],
    }
    assert tuned.model.config.id2label == {0: "other", 1: "negative"}


def test_serving_tokenizer_gives_the_ids_training_used(bundle, parity_batch):
    scorer = load_bundle(bundle)
    reference = AutoTokenizer.from_pretrained(tt.base_path(tt.MINILM), local_files_only=True)

    clean_samples = [preprocess(t) for t in SAMPLES]
    served = scorer.encode(clean_samples + parity_batch)
    expected = reference(clean_samples + parity_batch, truncation=True, max_length=32)

    assert [e.ids for e in served] == expected["input_ids"]
    assert [e.type_ids for e in served] == expected["token_type_ids"]
    assert max(len(e.ids) for e in served) == 32
    # Placeholders stay plain text: "<user>" is the three word pieces "<", "user", ">".
    assert served[0].tokens[:5] == ["[CLS]", "<", "user", ">", "worst"]
    assert served[4].tokens == ["[CLS]", "[SEP]"]


def test_chunked_scoring_keeps_input_order(tuned, graphs, bundle, airline):
    # The fp32 graph makes each post's score independent of its neighbours, so a batch of
    # 150 (ten chunks, sorted by length first) must match post-by-post scoring exactly.
    scorer = _fp32_scorer(tuned, graphs, bundle)
    posts = [preprocess(t) for t in stratified_subset(airline, 150, seed=3)["text"]]

    together = scorer.score_clean(posts)
    one_by_one = np.array([scorer.score_clean([p])[0] for p in posts])

    assert together.shape == (150,) and together.dtype == np.float64
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)
    assert scorer.score_clean([]).shape == (0,)


def test_score_batch_preprocesses_like_score_clean(bundle):
    scorer = load_bundle(bundle)

    raw = scorer.score_batch(SAMPLES)
    clean_first = scorer.score_clean([preprocess(t) for t in SAMPLES])

    np.testing.assert_array_equal(raw, clean_first)
    assert ((raw > 0) & (raw < 1)).all()


def test_serving_imports_neither_torch_nor_transformers(bundle):
    script = (
        "import json, sys\n"
        "from models.scorer import load_bundle\n"
        f"p = load_bundle({str(bundle)!r}).score_batch(['@united delayed again', 'great crew'])\n"
        "print(json.dumps({'n': len(p), 'loaded': sorted(m for m in ('torch', 'transformers') if m in sys.modules)}))"
    )

    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"n": 2, "loaded": []}


def test_importing_the_trainer_first_leaves_the_models_package_intact(tmp_path):
    # onnxruntime.quantization puts onnxruntime/transformers, which holds a ``models``
    # folder, on sys.path; the run must still log this project's models package.
    script = "import training.transformer, models; print(models.__file__)"

    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(Path(models_package.__file__))


def test_a_bundle_without_its_tokenizer_fails_with_a_clear_error(bundle, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in (MANIFEST, "model.int8.onnx", "transformer.json"):
        (broken / name).symlink_to(bundle / name)

    with pytest.raises(ModelError, match=f"cannot load the transformer model at {broken}: .*tokenizer.json"):
        load_bundle(broken)


def test_length_bucketed_batches_cover_every_row_once_per_epoch():
    lengths = np.random.default_rng(0).integers(3, 60, size=1000)

    first = tt.length_bucketed_batches(lengths, 32, np.random.default_rng(5))
    again = tt.length_bucketed_batches(lengths, 32, np.random.default_rng(5))

    rows = np.concatenate(first)
    assert sorted(rows.tolist()) == list(range(1000))
    assert sorted(len(b) for b in first)[1:] == [32] * (len(first) - 1)
    assert all((a == b).all() for a, b in zip(first, again))
    # Sorted pools: a batch's lengths span far less than the whole range of 3..59.
    assert np.median([np.ptp(lengths[b]) for b in first]) <= 3


def test_base_must_be_a_checkpoint_folder(tmp_path):
    with pytest.raises(ValueError, match=f"transformer base {tmp_path} is not a checkpoint folder: no config.json in it"):
        tt.base_path(str(tmp_path))


def test_unknown_parameter_fails_before_anything_runs(tmp_path):
    settings = Settings(home=tmp_path, _env_file=None)

    with pytest.raises(ValueError, match="unknown transformer parameter\\(s\\) epoch; known: base, max_len"):
        train("transformer", settings=settings, params={"epoch": 1})
    assert not (tmp_path / "mlflow").exists()


def test_cli_base_option_is_for_the_transformer_only(tmp_path):
    result = CliRunner().invoke(cli, ["train", "--family", "tfidf", "--base", str(tmp_path)])

    assert result.exit_code == 2
    assert "--base applies only to --family transformer" in result.output


def test_training_from_a_saved_checkpoint_registers_a_version_that_serves(tuned, tmp_path):
    # Any local BERT checkpoint can be the base: here the small fine-tune, saved the way
    # transformers saves every checkpoint.
    checkpoint = tmp_path / "checkpoint"
    tuned.model.save_pretrained(checkpoint)
    tuned.tokenizer.save_pretrained(checkpoint)
    settings = Settings(home=tmp_path / "home", _env_file=None)
    lines: list[str] = []

    result = train(
        "transformer", "airline", "negative_vs_positive", settings,
        limit=150, params={"base": str(checkpoint), "epochs": 1, "max_len": 32}, progress=lines.append,
    )

    assert (result.registered_name, result.version, result.became_champion) == ("badbuzz-sentiment", "1", True)
    client = mlflow.MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert (run.data.params["family"], run.data.params["base"]) == ("transformer", str(checkpoint))
    assert (run.data.params["epochs"], run.data.params["max_len"], run.data.params["batch_size"]) == ("1", "32", "32")
    assert 0 <= result.metrics["test_accuracy"] <= 1
    assert f"fitting transformer on {run.data.params['n_train']} texts" in lines

    scorer = load_scorer(result.model_uri, tracking_uri=settings.tracking_uri, cache_dir=tmp_path / "cache")
    texts = [NEGATIVE, POSITIVE, "just landed", "", "@united 3 hours on the tarmac, no water"]
    forward = scorer.score_batch(texts)
    backward = scorer.score_batch(texts[::-1])

    assert (scorer.info.family, scorer.info.version, scorer.info.scheme) == ("transformer", "1", "negative_vs_positive")
    # One chunk either way: the same rows in another order give the same scores.
    np.testing.assert_allclose(forward, backward[::-1], atol=1e-6)
    assert len(set(np.round(forward, 6))) == len(texts)

    pyfunc = mlflow.pyfunc.load_model(client.get_model_version_download_uri("badbuzz-sentiment", "1"))
    out = pyfunc.predict(pd.DataFrame({"text": texts}))
    np.testing.assert_allclose(out["p_negative"].to_numpy(), forward, atol=1e-6)
    assert out["label"].tolist() == ["negative" if p >= 0.5 else "positive" for p in forward]
