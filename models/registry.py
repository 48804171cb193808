"""The one module that talks to the MLflow Model Registry: fetching a registered version
into a local cache, and every registry question and change the worker, training, the
retraining loop, the CLI and the benchmarks make (aliases, versions, the facts logged on a
version's training run, version tags).

MLflow is imported inside the functions: a worker that serves a local bundle never pays
for importing it."""
from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from config.connections import redact_url
from models.bundle import MANIFEST, ModelError, find_bundle

# Version tag holding the SHA-256 of the bundle's bundle.json, checked at every fetch.
MANIFEST_DIGEST_TAG = "bundle_manifest_sha256"
CHAMPION = "champion"
CHALLENGER = "challenger"
ALIASES = (CHAMPION, CHALLENGER)

if TYPE_CHECKING:
    from config.settings import Settings

_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")


class RegistryError(ModelError):
    """The registry did not answer a question; the message says which and why."""


def client_for(tracking_uri: str):
    """An ``MlflowClient`` bound to ``tracking_uri`` for tracking and registry alike.

    Passed explicitly, never set globally: that would redirect the caller's own MLflow
    calls (and export MLFLOW_TRACKING_URI to its environment, where ``Settings`` reads it)."""
    import mlflow

    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


@dataclass(frozen=True)
class RegisteredVersion:
    version: str
    run_id: str  # "" for a version registered without a training run


@dataclass(frozen=True)
class RunFacts:
    """What a version's training run logged."""

    run_id: str
    params: dict[str, str]
    tags: dict[str, str]
    metrics: dict[str, float]
    started_ms: int


class ModelRegistry:
    """The registered model ``name`` in the store at ``tracking_uri``. Blocking calls:
    the worker runs them in a thread."""

    def __init__(self, tracking_uri: str, name: str):
        self.tracking_uri = tracking_uri
        self.name = name
        self._client = None
        self._families: dict[str, str] = {}  # version -> family; a version's run never changes

    @classmethod
    def of(cls, settings: Settings) -> ModelRegistry:
        return cls(settings.tracking_uri, settings.model_name)

    @property
    def client(self):
        if self._client is None:
            self._client = client_for(self.tracking_uri)
        return self._client

    def aliases(self) -> dict[str, str]:
        """Alias -> version; ValueError when the model was never registered."""
        from mlflow.exceptions import MlflowException

        try:
            held = self.client.get_registered_model(self.name).aliases
        except MlflowException:
            raise ValueError(f"no registered model {self.name!r} in this MLflow store: train one first (badbuzz train)") from None
        return {alias: str(version) for alias, version in held.items()}

    def alias_version(self, alias: str) -> str | None:
        return self.aliases().get(alias)

    def versions(self) -> list[RegisteredVersion]:
        """Every version, oldest first."""
        from mlflow.exceptions import MlflowException

        try:
            found = self.client.search_model_versions(f"name = '{self.name}'")
        except MlflowException as exc:
            raise RegistryError(f"cannot list {self.name} versions in MLflow at {redact_url(self.tracking_uri)}: {exc.message}") from None
        return sorted((RegisteredVersion(str(mv.version), mv.run_id or "") for mv in found), key=lambda v: int(v.version))

    def version(self, version: str) -> RegisteredVersion:
        from mlflow.exceptions import MlflowException

        try:
            mv = self.client.get_model_version(self.name, version)
        except MlflowException:
            raise ValueError(f"{self.name} has no version {version}") from None
        return RegisteredVersion(str(mv.version), mv.run_id or "")

    def run(self, run_id: str) -> RunFacts:
        from mlflow.exceptions import MlflowException

        try:
            run = self.client.get_run(run_id)
        except MlflowException as exc:
            raise RegistryError(f"cannot read run {run_id} in MLflow at {redact_url(self.tracking_uri)}: {exc.message}") from None
        data = run.data
        return RunFacts(run_id, dict(data.params), dict(data.tags), dict(data.metrics), int(run.info.start_time))

    def families(self) -> dict[str, str]:
        """Version -> the family its training run logged ("" when it has no run)."""
        out = {}
        for v in self.versions():
            if v.version not in self._families:
                self._families[v.version] = self.run(v.run_id).params.get("family", "") if v.run_id else ""
            out[v.version] = self._families[v.version]
        return out

    def newest_of_family(self, family: str) -> str | None:
        versions = [int(version) for version, f in self.families().items() if f == family]
        return str(max(versions)) if versions else None

    def register(self, source: str, run_id: str, *, manifest_sha256: str) -> str:
        """Register ``source`` as a new version, tagged with the SHA-256 of its
        ``bundle.json`` (which holds the digest of every other file); return its number."""
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

        try:
            self.client.create_registered_model(self.name)
        except MlflowException as exc:
            if exc.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
                raise
        return str(self.client.create_model_version(self.name, source, run_id=run_id, tags={MANIFEST_DIGEST_TAG: manifest_sha256}).version)

    def crown_if_first(self, version: str) -> bool:
        """Give ``version`` the champion alias only when no version holds it yet; replacing
        a champion is the promotion gate's decision."""
        if CHAMPION in self.aliases():
            return False
        self.set_alias(CHAMPION, version)
        return True

    def set_alias(self, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(self.name, alias, version)

    def delete_alias(self, alias: str) -> None:
        self.client.delete_registered_model_alias(self.name, alias)

    def tag_version(self, version: str, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_model_version_tag(self.name, version, key, value)

    def log_version_metrics(self, version: str, metrics: Mapping[str, float], *, stamp_ms: int) -> bool:
        """Log ``metrics`` on ``version``'s training run; False when this registry has no
        such version."""
        from mlflow.entities import Metric
        from mlflow.exceptions import MlflowException

        try:
            run_id = self.client.get_model_version(self.name, version).run_id
        except MlflowException:
            return False
        self.client.log_batch(run_id, metrics=[Metric(k, float(v), stamp_ms, 0) for k, v in metrics.items()])
        return True


def fetch_registered(uri: str, *, tracking_uri: str | None, cache_dir: Path | None) -> tuple[Path, str, str]:
    """Download the bundle behind ``uri``; return (folder, registered name, version)."""
    import mlflow
    from mlflow.exceptions import MlflowException

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
            recorded = (mv.tags or {}).get(MANIFEST_DIGEST_TAG)
            # The storage URI, not models:/...: MLflow resolves models:/ URIs through the
            # global registry URI whatever registry_uri download_artifacts is given.
            source = client.get_model_version_download_uri(name, version)
        else:
            source, recorded = uri, None
        root = cache_dir or Path.home() / ".cache" / "badbuzz"
        # Version numbers restart in every store (and in a re-created one), so the cache
        # key also carries where the version's files live.
        digest = hashlib.sha256(f"{tracking_uri}|{source}".encode()).hexdigest()[:12]
        dest = root / (f"{name}-v{version}-{digest}" if name else f"run-{digest}")
        if not any(dest.rglob(MANIFEST)):
            _download(source, tracking_uri, root, dest)
    except MlflowException as exc:
        raise ModelError(f"cannot load {uri} from MLflow at {redact_url(tracking_uri)}: {exc.message}") from exc
    if match:
        _check_manifest(dest, recorded, f"{name} v{version}")
    return dest, name, version


def manifest_sha256(bundle_dir: Path) -> str:
    return hashlib.sha256((find_bundle(bundle_dir) / MANIFEST).read_bytes()).hexdigest()


def _check_manifest(dest: Path, recorded: str | None, label: str) -> None:
    """The artifact store is not trusted alone: a rewritten bundle.json (and digests in it)
    must also match what the registry recorded when the version was registered."""
    if not recorded:
        raise ModelError(f"{label} was registered without a bundle digest ({MANIFEST_DIGEST_TAG} tag): retrain it")
    if manifest_sha256(dest) != recorded:
        raise ModelError(f"{label}: {MANIFEST} does not match the SHA-256 recorded at registration (changed in the artifact store)")


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
