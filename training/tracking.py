"""MLflow run tracking: the store, the experiment, the run, the pyfunc model. Registering
and aliasing versions is ``models.registry``'s.

Everything goes through an ``MlflowClient`` bound to the settings' store. MLflow's fluent
API (start_run, log_model) would need ``mlflow.set_tracking_uri``, which is process-global
and also exports MLFLOW_TRACKING_URI to the environment, where ``Settings`` reads it."""
from __future__ import annotations

import logging
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import joblib
import mlflow
import numpy as np
import onnxruntime
import pandas as pd
import sklearn
import tokenizers
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

import models
from config.settings import PROJECT_ROOT, Settings
from models.pyfunc import SIGNATURE, BundleModel
from models.registry import client_for

EXPERIMENT = "badbuzz"
MODEL_PATH = "model"
# Synthetic on purpose: an input example taken from the data would store real tweets
# (and the handles preprocessing anonymises) inside every model artifact.
INPUT_EXAMPLE = pd.DataFrame({"text": [
    "@united lost my bag again, worst airline ever",
    "@JetBlue thanks for the smooth flight!",
]})


def open_store(settings: Settings) -> mlflow.MlflowClient:
    return client_for(settings.tracking_uri)


def ensure_experiment(client: mlflow.MlflowClient, settings: Settings) -> str:
    """The experiment's id, creating it with artifacts under ``settings.artifact_root``:
    left to itself, a sqlite store writes artifacts to ./mlruns of whatever the CWD is."""
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    # A tracking server stores artifacts itself, where every worker can fetch them; only a
    # local store needs a folder of ours.
    if not settings.tracking_uri.startswith(("http://", "https://")):
        settings.artifact_root.mkdir(parents=True, exist_ok=True)
        location = settings.artifact_root.resolve().as_uri()
    try:
        return client.create_experiment(EXPERIMENT, artifact_location=location)
    except MlflowException as exc:
        if not _already_exists(exc):
            raise
        return client.get_experiment_by_name(EXPERIMENT).experiment_id  # created concurrently


def git_commit() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def log_values(
    client: mlflow.MlflowClient, run_id: str, params: dict[str, object], metrics: dict[str, float], tags: dict[str, str]
) -> None:
    now = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(key, float(value), now, 0) for key, value in metrics.items()],
        params=[Param(key, str(value)) for key, value in params.items()],
        tags=[RunTag(key, value) for key, value in tags.items()],
    )


def log_bundle_model(client: mlflow.MlflowClient, run_id: str, bundle_dir: Path) -> str:
    """Save the bundle as a pyfunc model into the run's artifacts; return its storage URI."""
    with tempfile.TemporaryDirectory() as scratch, _quiet("mlflow.pyfunc"):
        model_dir = Path(scratch) / MODEL_PATH
        mlflow.pyfunc.save_model(
            path=str(model_dir),
            python_model=BundleModel(),
            artifacts={"bundle": str(bundle_dir)},
            # Ships the models package so the pyfunc loads where badbuzz is not installed.
            code_paths=[str(Path(models.__file__).parent)],
            # Listed rather than inferred: inference loads the model in a subprocess.
            pip_requirements=[
                f"mlflow=={mlflow.__version__}",
                f"scikit-learn=={sklearn.__version__}",
                f"joblib=={joblib.__version__}",
                f"numpy=={np.__version__}",
                f"pandas=={pd.__version__}",
                f"onnxruntime=={onnxruntime.__version__}",
                f"tokenizers=={tokenizers.__version__}",
            ],
            signature=SIGNATURE,
            input_example=INPUT_EXAMPLE,
        )
        client.log_artifacts(run_id, str(model_dir), MODEL_PATH)
    return f"{client.get_run(run_id).info.artifact_uri}/{MODEL_PATH}"


def _already_exists(exc: MlflowException) -> bool:
    return exc.error_code == ErrorCode.Name(RESOURCE_ALREADY_EXISTS)


@contextmanager
def _quiet(logger_name: str):
    """MLflow warns that any python_model is pickled; ours pickles only a class reference,
    so the warning would only teach users to ignore warnings."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
