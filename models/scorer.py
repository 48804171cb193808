"""The scoring interface: loading a bundle (``models.bundle``) into the scorer of its family.

A bundle is a folder holding ``bundle.json`` (family, label scheme, threshold, the
preprocessing version it was trained with) plus the family's own files. Training writes
bundles, MLflow stores them, and serving loads them without importing any training
framework."""
from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from models.bundle import FAMILIES, MANIFEST, ModelError, find_bundle, verify_files
from models.preprocess import PREPROCESS_VERSION


@dataclass(frozen=True)
class ModelInfo:
    family: str
    scheme: str
    threshold: float = 0.5
    name: str = ""
    version: str = ""
    uri: str = ""
    # The loaded bundle's folder: what else it holds (e.g. the drift reference) is read from there.
    bundle_dir: str = ""

    @property
    def negative_label(self) -> str:
        return "negative"

    @property
    def other_label(self) -> str:
        return "not_negative" if self.scheme == "negative_vs_rest" else "positive"

    def label(self, p_negative: float) -> str:
        return self.negative_label if p_negative >= self.threshold else self.other_label

    @property
    def version_label(self) -> str:
        """The model as predictions, counters and alerts record it: its registered version,
        or its URI when it was loaded from a path."""
        return self.version or self.uri

    @property
    def display(self) -> str:
        """How alerts and logs name the model: ``name v3 (tfidf)`` or the path."""
        ident = f"{self.name} v{self.version}" if self.name and self.version else self.uri
        return f"{ident} ({self.family})"


class Scorer(Protocol):
    info: ModelInfo

    def score_batch(self, texts: Sequence[str]) -> np.ndarray:
        """P(negative) for each raw text, in order, as float64."""

    def score_clean(self, clean_texts: Sequence[str]) -> np.ndarray:
        """Like ``score_batch`` for texts already passed through ``preprocess`` (the stream
        preprocesses once for scoring, scopes and driver terms)."""


Loader = Callable[[Path, ModelInfo], Scorer]
_LOADERS: dict[str, Loader] = {}


def register_family(family: str) -> Callable[[Loader], Loader]:
    def decorate(loader: Loader) -> Loader:
        _LOADERS[family] = loader
        return loader

    return decorate


def load_bundle(path: Path, *, name: str = "", version: str = "", uri: str = "") -> Scorer:
    bundle_dir = find_bundle(Path(path))
    try:
        manifest = json.loads((bundle_dir / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"unreadable {bundle_dir / MANIFEST}: {exc}") from exc
    if manifest.get("preprocess_version") != PREPROCESS_VERSION:
        raise ModelError(
            f"model at {bundle_dir} was trained with preprocessing v{manifest.get('preprocess_version')}, "
            f"this code applies v{PREPROCESS_VERSION}: retrain it"
        )
    family = manifest.get("family", "")
    _import_family(family)
    if family not in _LOADERS:
        raise ModelError(f"model at {bundle_dir} has unknown family {family!r}")
    verify_files(bundle_dir, manifest)
    info = ModelInfo(
        family=family,
        scheme=manifest["scheme"],
        threshold=float(manifest.get("threshold", 0.5)),
        name=name,
        version=version,
        uri=uri or str(bundle_dir),
        bundle_dir=str(bundle_dir),
    )
    return _LOADERS[family](bundle_dir, info)


def _import_family(family: str) -> None:
    # Families register themselves on import; importing only the one a bundle names keeps
    # a worker lean.
    if family in FAMILIES and family not in _LOADERS:
        importlib.import_module(f"models.{family}")


def load_scorer(uri: str, *, tracking_uri: str | None = None, cache_dir: Path | None = None) -> Scorer:
    """Load a scorer from a local bundle path or an MLflow ``models:/`` / ``runs:/`` URI."""
    local = Path(uri).expanduser()
    if local.exists():
        return load_bundle(local, uri=uri)
    if not uri.startswith(("models:/", "runs:/")):
        raise ModelError(f"model {uri!r} is neither an existing path nor a models:/ or runs:/ URI")
    from models.registry import fetch_registered

    folder, name, version = fetch_registered(uri, tracking_uri=tracking_uri, cache_dir=cache_dir)
    return load_bundle(folder, name=name, version=version, uri=uri)


def with_threshold(info: ModelInfo, threshold: float) -> ModelInfo:
    return replace(info, threshold=threshold)
