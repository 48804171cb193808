"""An MLflow pyfunc face for a model bundle, so MLflow's own tools (``mlflow.pyfunc.load_model``,
``mlflow models serve``) can score with it. The stream does not use it: it loads the bundle."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

from models.scorer import load_bundle

SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("string", "text")]),
    outputs=Schema([ColSpec("double", "p_negative"), ColSpec("string", "label")]),
)


class BundleModel(mlflow.pyfunc.PythonModel):
    """Input: a DataFrame with a ``text`` column. Output: ``p_negative`` and ``label``."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.scorer = load_bundle(Path(context.artifacts["bundle"]))

    # MLflow reads these hints; pd.DataFrame is one it accepts without deriving a schema
    # from it, so SIGNATURE stays the model's contract.
    def predict(
        self, context: mlflow.pyfunc.PythonModelContext, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        texts = model_input["text"].fillna("").astype(str).tolist()
        p_negative = self.scorer.score_batch(texts)
        labels = [self.scorer.info.label(float(p)) for p in p_negative]
        return pd.DataFrame({"p_negative": p_negative, "label": labels})
