"""The model bundle every family is saved as: a folder holding ``bundle.json`` (family,
label scheme, threshold, the preprocessing version it was trained with) plus the family's
own files, with the SHA-256 of each of them: a file altered after training is refused
at load."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from models.preprocess import PREPROCESS_VERSION

MANIFEST = "bundle.json"
# Each family is served by models.<family> and trained by training.<family>. No import of
# config/ here: the pyfunc ships models/ alone.
FAMILIES = ("tfidf", "gru", "transformer")
SCHEMES = ("negative_vs_rest", "negative_vs_positive")
FILES = "files"  # manifest key: {path relative to the bundle: SHA-256 hex digest}


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
    record_files(bundle_dir)


def record_files(bundle_dir: Path) -> None:
    """Record the digest of every file of the bundle in its manifest; called again after
    adding a file to a bundle."""
    manifest = json.loads((bundle_dir / MANIFEST).read_text())
    manifest[FILES] = {
        path.relative_to(bundle_dir).as_posix(): file_sha256(path)
        for path in sorted(bundle_dir.rglob("*"))
        if path.is_file() and path.name != MANIFEST
    }
    (bundle_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))


def verify_files(bundle_dir: Path, manifest: dict) -> None:
    """ModelError unless every file the manifest lists is there with its recorded digest."""
    files = manifest.get(FILES)
    if not isinstance(files, dict) or not files:
        raise ModelError(f"model at {bundle_dir} records no file digests in {MANIFEST}: retrain it")
    for name, digest in sorted(files.items()):
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise ModelError(f"model at {bundle_dir} lists {name!r} in {MANIFEST}, outside the bundle")
        path = bundle_dir / name
        if not path.is_file():
            raise ModelError(f"cannot load the {manifest.get('family')} model at {bundle_dir}: {name} is missing")
        if file_sha256(path) != digest:
            raise ModelError(f"model at {bundle_dir}: {name} does not match the SHA-256 recorded in {MANIFEST} (changed since training)")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def find_bundle(root: Path) -> Path:
    """The bundle folder at or under ``root`` (MLflow nests it under artifacts/)."""
    if (root / MANIFEST).is_file():
        return root
    found = sorted(root.rglob(MANIFEST))
    if not found:
        raise ModelError(f"no {MANIFEST} under {root}: not a badbuzz model bundle")
    return found[0].parent
