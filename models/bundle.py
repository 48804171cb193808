"""The model bundle every family is saved as: a folder holding ``bundle.json`` (family,
label scheme, threshold, the preprocessing version it was trained with) plus the family's
own files."""
from __future__ import annotations

import json
from pathlib import Path

from models.preprocess import PREPROCESS_VERSION

MANIFEST = "bundle.json"
# Each family is served by models.<family> and trained by training.<family>. No import of
# config/ here: the pyfunc ships models/ alone.
FAMILIES = ("tfidf", "gru", "transformer")
SCHEMES = ("negative_vs_rest", "negative_vs_positive")


class ModelError(RuntimeError):
    """A model cannot be found or loaded; the message says which and why."""


def write_manifest(bundle_dir: Path, *, family: str, scheme: str, threshold: float = 0.5, **extra: object) -> None:
    if scheme not in SCHEMES:
        raise ValueError(f"unknown label scheme {scheme!r}; expected one of {', '.join(SCHEMES)}")
    manifest = {
        "family": family,
        "scheme": scheme,
        "threshold": threshold,
        "preprocess_version": PREPROCESS_VERSION,
        **extra,
    }
    (bundle_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))


def find_bundle(root: Path) -> Path:
    """The bundle folder at or under ``root`` (MLflow nests it under artifacts/)."""
    if (root / MANIFEST).is_file():
        return root
    found = sorted(root.rglob(MANIFEST))
    if not found:
        raise ModelError(f"no {MANIFEST} under {root}: not a badbuzz model bundle")
    return found[0].parent
