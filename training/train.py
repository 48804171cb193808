"""Train one model family on one data source, log it to MLflow and register it."""
from __future__ import annotations

import importlib
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable

import pandas as pd

from badbuzz.settings import Settings, get_settings
from models.preprocess import PREPROCESS_VERSION
from models.scorer import SCHEMES, Scorer, load_bundle, write_manifest
from training import tracking
from training.data import CleanReport, Split, clean, file_sha256, parse_data_spec, split, stratified_subset, to_binary
from training.metrics import evaluate

# Each family module offers PARAMS, fit(texts, labels, seed) and save(model, bundle_dir).
# Imported on demand: training TF-IDF must not pay for importing TensorFlow or torch.
FAMILIES: dict[str, str] = {"tfidf": "training.tfidf"}
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


def train(
    family: str,
    data: str = "airline",
    scheme: str = "negative_vs_rest",
    settings: Settings | None = None,
    *,
    limit: int | None = None,
    register: bool = True,
    progress: Progress = print,
) -> TrainResult:
    if family not in FAMILIES:
        raise ValueError(f"model family {family!r} is not available yet; implemented: {', '.join(FAMILIES)}")
    if scheme not in SCHEMES:
        raise ValueError(f"unknown label scheme {scheme!r}; expected one of {', '.join(SCHEMES)}")
    settings = settings or get_settings()
    module: ModuleType = importlib.import_module(FAMILIES[family])
    prepared = _prepare(data, scheme, limit, progress)
    train_part = prepared.parts.train

    progress(f"fitting {family} on {len(train_part)} texts")
    started = time.perf_counter()
    model = module.fit(train_part["text"].tolist(), train_part["label"].to_numpy(), SEED)
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
        metrics = {"fit_seconds": fit_seconds, **_evaluate(load_bundle(bundle_dir), prepared.parts)}
        progress(
            f"test: accuracy {metrics['test_accuracy']:.4f}, negative precision "
            f"{metrics['test_precision_negative']:.4f} recall {metrics['test_recall_negative']:.4f} "
            f"F1 {metrics['test_f1_negative']:.4f}, ROC AUC {metrics['test_roc_auc']:.4f}"
        )
        params = {
            "family": family, "data": data, "scheme": scheme, "seed": SEED, "limit": limit,
            "threshold": THRESHOLD, "preprocess_version": PREPROCESS_VERSION,
            **{f"clean_{k}": v for k, v in prepared.report.as_dict().items()},
            **{f"n_{name}": len(part) for name, part in prepared.parts._asdict().items()},
            **module.PARAMS,
        }
        commit = tracking.git_commit()
        tags = {"data_hash": prepared.data_hash, **({"git_commit": commit} if commit else {})}
        tracking.log_values(client, run_id, params, metrics, tags)
        source = tracking.log_bundle_model(client, run_id, bundle_dir)
        version = tracking.register(client, settings.model_name, source, run_id) if register else None
        crowned = version is not None and tracking.crown_if_first(client, settings.model_name, version)
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


def _prepare(data: str, scheme: str, limit: int | None, progress: Progress) -> _Prepared:
    spec = parse_data_spec(data)
    progress(f"loading {data} from {spec.path}")
    raw = spec.load()
    progress(f"loaded {len(raw)} rows: {_counts(raw['sentiment'])}")
    cleaned, report = clean(raw)
    progress(
        f"cleaning removed {report.empty} empty, {report.broken_encoding} broken-encoding and "
        f"{report.duplicates} duplicate texts; {report.rows_out} rows left"
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
    return _Prepared(parts, report, file_sha256([spec.path]))


def _evaluate(scorer: Scorer, parts: Split) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for name, part in (("val", parts.val), ("test", parts.test)):
        scores = scorer.score_batch(part["text"].tolist())
        metrics |= {f"{name}_{k}": v for k, v in evaluate(part["label"].to_numpy(), scores, THRESHOLD).items()}
    return metrics


def _counts(values: pd.Series) -> str:
    return ", ".join(f"{label} {count}" for label, count in values.value_counts().items())
