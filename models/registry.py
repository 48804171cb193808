"""Fetching registered model versions from MLflow into a local cache."""
from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from pathlib import Path

from models.scorer import MANIFEST, ModelError

_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")


def fetch_registered(uri: str, *, tracking_uri: str | None, cache_dir: Path | None) -> tuple[Path, str, str]:
    """Download the bundle behind ``uri``; return (folder, registered name, version)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    # Resolved once and passed explicitly: setting it globally would redirect the
    # caller's own MLflow calls.
    tracking_uri = tracking_uri or mlflow.get_tracking_uri()
    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    name = version = ""
    match = _MODELS_URI.match(uri)
    try:
        if match:
            name = match["name"]
            mv = (
                client.get_model_version_by_alias(name, match["alias"])
                if match["alias"]
                else client.get_model_version(name, match["version"])
            )
            version = str(mv.version)
            source = f"models:/{name}/{version}"
            # Version numbers restart in every store (and in a re-created one), so the
            # cache key also carries what the version points at.
            identity = f"{tracking_uri}|{mv.source}|{mv.run_id}"
        else:
            source = identity = uri
        root = cache_dir or Path.home() / ".cache" / "badbuzz"
        digest = hashlib.sha256(identity.encode()).hexdigest()[:12]
        dest = root / (f"{name}-v{version}-{digest}" if name else f"run-{digest}")
        if not any(dest.rglob(MANIFEST)):
            _download(mlflow, source, tracking_uri, root, dest)
    except MlflowException as exc:
        raise ModelError(f"cannot load {uri} from MLflow at {tracking_uri}: {exc.message}") from exc
    return dest, name, version


def _download(mlflow, source: str, tracking_uri: str, root: Path, dest: Path) -> None:
    # Download beside the destination and rename into place, so a crash or a concurrent
    # worker never leaves a half-written bundle that looks complete.
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=root))
    try:
        mlflow.artifacts.download_artifacts(
            artifact_uri=source, dst_path=str(staging), tracking_uri=tracking_uri, registry_uri=tracking_uri
        )
        shutil.rmtree(dest, ignore_errors=True)
        staging.rename(dest)
    except OSError:
        if not any(dest.rglob(MANIFEST)):
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
