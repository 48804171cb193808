"""Train one model family on one data source, log it to MLflow and register it."""
from __future__ import annotations

import importlib
import importlib.util
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pandas as pd

from config.settings import Settings, get_settings
from models import drift
from models.bundle import FAMILIES, SCHEMES, record_files, write_manifest
from models.preprocess import PREPROCESS_VERSION
from models.registry import ModelRegistry, manifest_sha256
from models.scorer import Scorer, load_bundle
from training import evaluate, tracking
from training.data import (
    LONG_CHARS,
    SHORT_TOKENS,
    CleanReport,
    Split,
    clean,
    file_sha256,
    frame_sha256,
    parse_data_spec,
    split,
    stratified_subset,
    to_binary,
)
from training.feedback import FeedbackReport, add_feedback, read_feedback_file, recover_texts
from training.profile import profile

# What each family's training code imports beyond the base install (which serves every
# family through onnxruntime): the framework, modules whose absence means its extra is
# missing, and about what the extra adds to the base venv (measured on Linux x86-64).
EXTRAS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "gru": ("TensorFlow", ("tensorflow", "keras", "tf2onnx"), "1.6 GB"),
    "transformer": ("torch and transformers", ("torch", "transformers", "onnx"), "5.8 GB"),
}
SEED = 42
THRESHOLD = 0.5

Progress = Callable[[str], object]


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    model_uri: str
    registered_name: str | None
    version: str | None
    metrics: dict[str, float]
    bundle_dir: Path
    became_champion: bool


@dataclass(frozen=True)
class _Prepared:
    parts: Split
    report: CleanReport
    data_hash: str
    feedback: FeedbackReport | None = None
    feedback_hash: str = ""


def train(
    family: str,
    data: str = "airline",
    scheme: str = "negative_vs_rest",
    settings: Settings | None = None,
    *,
    limit: int | None = None,
    register: bool = True,
    params: dict[str, object] | None = None,
    feedback: Path | None = None,
    progress: Progress = print,
) -> TrainResult:
    """``params`` overrides entries of the family's ``PARAMS`` (e.g. the transformer's
    ``base`` checkpoint); the run logs the values actually used. ``feedback`` is a JSON-lines
    file of labelled posts added to the training part only (see ``training.feedback``)."""
    if family not in FAMILIES:
        raise ValueError(f"model family {family!r} is not available yet; implemented: {', '.join(FAMILIES)}")
    if scheme not in SCHEMES:
        raise ValueError(f"unknown label scheme {scheme!r}; expected one of {', '.join(SCHEMES)}")
    require_family(family)
    settings = settings or get_settings()
    # Each family's module training.<family> offers PARAMS, fit(texts, labels, seed, params)
    # and save(model, bundle_dir); optional: explain(model) -> dict, logged as
    # explanation.json. Imported on demand: training TF-IDF must not pay for importing
    # TensorFlow or torch.
    module: ModuleType = importlib.import_module(f"training.{family}")
    unknown = sorted(set(params or {}) - set(module.PARAMS))
    if unknown:
        raise ValueError(f"unknown {family} parameter(s) {', '.join(unknown)}; known: {', '.join(module.PARAMS)}")
    family_params = {**module.PARAMS, **(params or {})}
    prepared = _prepare(data, scheme, limit, feedback, settings, progress)
    train_part = prepared.parts.train

    progress(f"fitting {family} on {len(train_part)} texts")
    started = time.perf_counter()
    model = module.fit(train_part["text"].tolist(), train_part["label"].to_numpy(), SEED, family_params)
    fit_seconds = time.perf_counter() - started
    progress(f"fitted in {fit_seconds:.1f} s")

    client = tracking.open_store(settings)
    run_id = client.create_run(tracking.ensure_experiment(client, settings), run_name=f"{family}-{scheme}").info.run_id
    try:
        bundle_dir = settings.home / "bundles" / f"{family}-{run_id}"
        bundle_dir.mkdir(parents=True)
        module.save(model, bundle_dir)
        write_manifest(
            bundle_dir, family=family, scheme=scheme, threshold=THRESHOLD,
            data=data, data_hash=prepared.data_hash, run_id=run_id,
        )
        # Scored through the saved bundle, as serving will, so the metrics describe
        # exactly what ships.
        scorer = load_bundle(bundle_dir)
        # What serving's drift monitor compares live traffic with (models.drift).
        val_texts = prepared.parts.val["text"].tolist()
        drift.write_reference(bundle_dir, drift.build_reference(scorer.score_batch(val_texts), train_part["text"].tolist(), val_texts))
        record_files(bundle_dir)
        metrics = {"fit_seconds": fit_seconds, **_assess(client, run_id, scorer, module, model, prepared, bundle_dir)}
        progress(
            f"test: accuracy {metrics['test_accuracy']:.4f}, negative precision "
            f"{metrics['test_precision_negative']:.4f} recall {metrics['test_recall_negative']:.4f} "
            f"F1 {metrics['test_f1_negative']:.4f}, ROC AUC {metrics['test_roc_auc']:.4f}"
        )
        progress(
            f"speed: single-post latency p50 {metrics['latency_p50_ms']:.2f} ms, p95 {metrics['latency_p95_ms']:.2f} ms; "
            f"{metrics[_THROUGHPUT]:,.0f} posts/s in batches of {evaluate.THROUGHPUT_BATCH}; "
            f"bundle {metrics['bundle_size_bytes'] / 1e6:.2f} MB"
        )
        params = {
            "family": family, "data": data, "scheme": scheme, "seed": SEED, "limit": limit,
            "threshold": THRESHOLD, "preprocess_version": PREPROCESS_VERSION,
            **{f"clean_{k}": v for k, v in prepared.report.as_dict().items()},
            **{f"n_{name}": len(part) for name, part in prepared.parts._asdict().items()},
            **_feedback_params(feedback, prepared),
            **family_params,
        }
        commit = tracking.git_commit()
        tags = {
            "data_hash": prepared.data_hash,
            # What the promotion gate compares: same data, limit and cleaning give the
            # same held-out test set, and metrics on it are comparable.
            "test_split_hash": frame_sha256(prepared.parts.test),
            **({"git_commit": commit} if commit else {}),
        }
        tracking.log_values(client, run_id, params, metrics, tags)
        source = tracking.log_bundle_model(client, run_id, bundle_dir)
        registry = ModelRegistry.of(settings)
        version = registry.register(source, run_id, manifest_sha256=manifest_sha256(bundle_dir)) if register else None
        crowned = version is not None and registry.crown_if_first(version)
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")

    if version is None:
        progress(f"logged run {run_id} (not registered)")
        return TrainResult(run_id, f"runs:/{run_id}/{tracking.MODEL_PATH}", None, None, metrics, bundle_dir, False)
    progress(
        f"logged run {run_id}; registered {settings.model_name} v{version}"
        + (" as champion" if crowned else " (champion alias left where it was)")
    )
    model_uri = f"models:/{settings.model_name}/{version}"
    return TrainResult(run_id, model_uri, settings.model_name, version, metrics, bundle_dir, crowned)


def require_family(family: str) -> None:
    """Refuses, in one line that says how to install it, a family whose extra is missing."""
    if family not in EXTRAS:
        return
    framework, modules, size = EXTRAS[family]
    if any(importlib.util.find_spec(name) is None for name in modules):
        raise ValueError(
            f"the {family} family needs {framework}, which the base install leaves out: "
            f"pip install -c constraints.txt -e '.[{family}]' (about {size})"
        )


def _prepare(
    data: str, scheme: str, limit: int | None, feedback: Path | None, settings: Settings, progress: Progress
) -> _Prepared:
    spec = parse_data_spec(data)
    # Read first: a malformed feedback file should fail before minutes of loading.
    records = read_feedback_file(feedback) if feedback is not None else None
    progress(f"loading {data} from {spec.path}")
    raw = spec.load()
    progress(f"loaded {len(raw)} rows: {_counts(raw['sentiment'])}")
    cleaned, report = clean(raw)
    progress(
        f"cleaning removed {report.empty} empty, {report.broken_encoding} broken-encoding and "
        f"{report.duplicates} duplicate texts; {report.rows_out} rows left, of which {report.very_short} "
        f"very short (< {SHORT_TOKENS} tokens) and {report.very_long} very long (> {LONG_CHARS} characters), kept"
    )
    labelled = to_binary(cleaned, scheme)
    if limit is not None:
        labelled = stratified_subset(labelled, limit, SEED)
        progress(f"limited to a stratified subset of {len(labelled)} rows")
    parts = split(labelled, seed=SEED)
    progress(
        f"{scheme}: {_counts(labelled['label'].map({1: 'negative', 0: 'other'}))}; "
        f"train {len(parts.train)} / val {len(parts.val)} / test {len(parts.test)}"
    )
    data_hash = file_sha256([spec.path])
    if feedback is None or records is None:
        return _Prepared(parts, report, data_hash)
    records, recovered = recover_texts(records, settings, settings.topic_raw)
    parts, fb = add_feedback(parts, records, scheme, recovered)
    # Counts only: feedback texts are users' posts and stay out of logs.
    progress(
        f"feedback: {fb.records} records, {fb.recovered} texts recovered from {settings.topic_raw}, "
        f"{fb.missing_text} missing; {fb.added} added to train ({fb.in_held_out} also in val/test, "
        f"{fb.not_in_scheme} unusable under {scheme}, {fb.unusable_text} empty/broken/repeated, "
        f"{fb.replaced_train} training rows replaced); train now {len(parts.train)}"
    )
    return _Prepared(parts, report, data_hash, fb, file_sha256([feedback]))


_THROUGHPUT = f"throughput_batch{evaluate.THROUGHPUT_BATCH}_per_s"


def _assess(
    client, run_id: str, scorer: Scorer, module: ModuleType, model: object, prepared: _Prepared, bundle_dir: Path
) -> dict[str, float]:
    """Quality, speed and size metrics; the plots, the data profile and the family's
    explanation (when it offers one) logged as run artifacts."""
    parts = prepared.parts
    metrics, test_scores = evaluate.quality(scorer, parts, THRESHOLD)
    test_texts = parts.test["text"].tolist()
    metrics |= evaluate.latency_ms(scorer, test_texts) | evaluate.throughput(scorer, test_texts)
    metrics["bundle_size_bytes"] = evaluate.directory_bytes(bundle_dir)
    other_label = scorer.info.other_label
    labels = parts.test["label"].to_numpy()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        evaluate.confusion_png(labels, test_scores, THRESHOLD, other_label, folder / "confusion_matrix.png")
        evaluate.roc_png(labels, test_scores, folder / "roc_curve.png")
        _write_json(folder / "data_profile.json", profile(parts._asdict(), other_label))
        explain = getattr(module, "explain", None)
        if explain is not None:
            _write_json(folder / "explanation.json", explain(model))
        client.log_artifacts(run_id, scratch)
    return metrics


def _feedback_params(path: Path | None, prepared: _Prepared) -> dict[str, object]:
    if prepared.feedback is None or path is None:
        return {"n_feedback": 0}
    return {
        "n_feedback": prepared.feedback.added,
        "feedback_file": Path(path).name,
        "feedback_sha256": prepared.feedback_hash,
        **{f"feedback_{k}": v for k, v in prepared.feedback.as_dict().items() if k != "added"},
    }


def _write_json(path: Path, value: object) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False))


def _counts(values: pd.Series) -> str:
    return ", ".join(f"{label} {count}" for label, count in values.value_counts().items())
