"""Fetching registered model versions from MLflow into a local cache."""
from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from pathlib import Path

from models.bundle import MANIFEST, ModelError

_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")


def fetch_registered(uri: str, *, tracking_uri: str | None, cache_dir: Path | None) -> tuple[Path, str, str]:
    """Download the bundle behind ``uri``; return (folder, registered name, version)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    # Passed explicitly, never set globally: that would redirect the caller's own MLflow
    # calls (and export MLFLOW_TRACKING_URI to its environment).
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
            # The storage URI, not models:/...: MLflow resolves models:/ URIs through the
            # global registry URI whatever registry_uri download_artifacts is given.
            source = client.get_model_version_download_uri(name, version)
        else:
            source = uri
        root = cache_dir or Path.home() / ".cache" / "badbuzz"
        # Version numbers restart in every store (and in a re-created one), so the cache
        # key also carries where the version's files live.
        digest = hashlib.sha256(f"{tracking_uri}|{source}".encode()).hexdigest()[:12]
        dest = root / (f"{name}-v{version}-{digest}" if name else f"run-{digest}")
        if not any(dest.rglob(MANIFEST)):
            _download(source, tracking_uri, root, dest)
    except MlflowException as exc:
        raise ModelError(f"cannot load {uri} from MLflow at {tracking_uri}: {exc.message}") from exc
    return dest, name, version


def _download(source: str, tracking_uri: str, root: Path, dest: Path) -> None:
    import mlflow

    # Download beside the destination and rename into place, so a crash or a concurrent
    # worker never leaves a half-written bundle that looks complete.
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=root))
    try:
        mlflow.artifacts.download_artifacts(
            artifact_uri=source, dst_path=str(staging), tracking_uri=tracking_uri, registry_uri=tracking_uri
        )
        if dest.exists() and not any(dest.rglob(MANIFEST)):
            shutil.rmtree(dest)  # an incomplete folder left by an interrupted older download
        try:
            staging.rename(dest)
        except OSError:
            if not any(dest.rglob(MANIFEST)):
                raise  # not a concurrent download that finished first: a real failure
    finally:
        shutil.rmtree(staging, ignore_errors=True)
