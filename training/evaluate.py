"""What a saved bundle is worth and what it costs: quality on the validation and test
splits, the test split's confusion matrix and ROC curve as PNGs, single-post latency,
batch throughput and size on disk.

Everything is measured through the loaded bundle, as serving will run it."""
from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve

from models.scorer import Scorer
from training.data import Split
from training.metrics import evaluate

LATENCY_POSTS = 200
LATENCY_WARMUP = 20
THROUGHPUT_BATCH = 64
THROUGHPUT_BATCHES = 10


def quality(scorer: Scorer, parts: Split, threshold: float) -> tuple[dict[str, float], np.ndarray]:
    """``val_*`` and ``test_*`` metrics, and the test split's scores (for the plots)."""
    scores = {name: scorer.score_batch(part["text"].tolist()) for name, part in (("val", parts.val), ("test", parts.test))}
    metrics = {
        f"{name}_{key}": value
        for name, part in (("val", parts.val), ("test", parts.test))
        for key, value in evaluate(part["label"].to_numpy(), scores[name], threshold).items()
    }
    return metrics, scores["test"]


def dataset_quality(scorer: Scorer, labelled: pd.DataFrame) -> dict[str, float]:
    """Accuracy, negative precision/recall/F1 and ROC AUC of ``scorer`` at its own
    threshold on a frame with ``text`` and ``label`` (1 = negative), plus ``n``, the rows."""
    scores = scorer.score_batch(labelled["text"].tolist())
    return {**evaluate(labelled["label"].to_numpy(), scores, scorer.info.threshold), "n": len(labelled)}


def latency_ms(scorer: Scorer, texts: Sequence[str], posts: int = LATENCY_POSTS, warmup: int = LATENCY_WARMUP) -> dict[str, float]:
    """p50 and p95 of ``score_batch([text])`` over the first ``posts`` texts, after
    ``warmup`` untimed calls (first calls pay for lazy initialisation and cold caches)."""
    sample = list(texts[:posts])
    if not sample:
        raise ValueError("latency needs at least one text")
    for text in itertools.islice(itertools.cycle(sample), warmup):
        scorer.score_batch([text])
    timings = []
    for text in sample:
        started = time.perf_counter_ns()
        scorer.score_batch([text])
        timings.append((time.perf_counter_ns() - started) / 1e6)
    return {
        "latency_p50_ms": float(np.percentile(timings, 50)),
        "latency_p95_ms": float(np.percentile(timings, 95)),
    }


def throughput(
    scorer: Scorer, texts: Sequence[str], batch: int = THROUGHPUT_BATCH, batches: int = THROUGHPUT_BATCHES
) -> dict[str, float]:
    """Posts per second scoring full batches of ``batch`` texts (the texts are cycled when
    there are fewer than ``batch * batches``), after one untimed batch."""
    if not texts:
        raise ValueError("throughput needs at least one text")
    pool = list(itertools.islice(itertools.cycle(texts), batch * (batches + 1)))
    chunks = [pool[i:i + batch] for i in range(0, len(pool), batch)]
    scorer.score_batch(chunks[0])
    started = time.perf_counter()
    for chunk in chunks[1:]:
        scorer.score_batch(chunk)
    elapsed = time.perf_counter() - started
    return {f"throughput_batch{batch}_per_s": batch * batches / elapsed}


def directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def confusion_png(labels: np.ndarray, p_negative: np.ndarray, threshold: float, other_label: str, path: Path) -> Path:
    """Counts and row shares; rows are the true class, negative first."""
    matrix = confusion_matrix(labels, (p_negative >= threshold).astype(int), labels=[1, 0])
    names = ["negative", other_label]
    figure = Figure(figsize=(4.8, 4.2), layout="constrained")
    axes = figure.add_subplot()
    axes.imshow(matrix, cmap="Blues")
    rows = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
    for (i, j), count in np.ndenumerate(matrix):
        colour = "white" if count > matrix.max() / 2 else "black"
        axes.text(j, i, f"{count}\n{shares[i, j]:.1%}", ha="center", va="center", color=colour)
    axes.set_xticks([0, 1], names)
    axes.set_yticks([0, 1], names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(f"Test split, threshold {threshold:g} (n={len(labels)})")
    return _save(figure, path)


def roc_png(labels: np.ndarray, p_negative: np.ndarray, path: Path) -> Path:
    false_positive, true_positive, _ = roc_curve(labels, p_negative, pos_label=1)
    figure = Figure(figsize=(4.8, 4.2), layout="constrained")
    axes = figure.add_subplot()
    axes.plot(false_positive, true_positive, label=f"AUC {roc_auc_score(labels, p_negative):.4f}")
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_xlabel("false positive rate")
    axes.set_ylabel("true positive rate (negative recall)")
    axes.set_title(f"ROC, test split (n={len(labels)})")
    axes.legend(loc="lower right")
    return _save(figure, path)


def _save(figure: Figure, path: Path) -> Path:
    # An explicit Agg canvas instead of pyplot: no global backend or figure registry, so
    # nothing leaks between runs in one process and no display is ever looked for.
    FigureCanvasAgg(figure)
    figure.savefig(path, format="png", dpi=120)
    return path
