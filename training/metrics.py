"""Binary metrics for P(negative) scores; label 1 = negative."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, precision_recall_fscore_support, roc_auc_score


def evaluate(labels: np.ndarray, p_negative: np.ndarray, threshold: float) -> dict[str, float]:
    predicted = (p_negative >= threshold).astype(int)
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels, predicted, pos_label=1, average="binary", zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "precision_negative": float(precision),
        "recall_negative": float(recall),
        "f1_negative": float(f1),
        "roc_auc": float(roc_auc_score(labels, p_negative)),
    }
