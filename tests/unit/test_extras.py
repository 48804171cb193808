"""The base install serves every family but trains only TF-IDF: training the gru or
transformer family without its extra says, in one line, how to install it and exits 1.
The missing framework is simulated: ``sys.modules[name] = None`` makes it unimportable."""
from __future__ import annotations

import sys

import pytest

from badbuzz import cli
from config.settings import get_settings

MESSAGES = {
    "gru": "badbuzz: the gru family needs TensorFlow, which the base install leaves out: "
    "pip install -c constraints.txt -e '.[gru]' (about 1.6 GB)\n",
    "transformer": "badbuzz: the transformer family needs torch and transformers, which the base install "
    "leaves out: pip install -c constraints.txt -e '.[transformer]' (about 5.8 GB)\n",
}


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("BADBUZZ_HOME", str(tmp_path))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def run_cli(monkeypatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["badbuzz", *args])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    return exited.value.code


@pytest.mark.parametrize(("family", "framework"), [("gru", "tensorflow"), ("transformer", "torch")])
@pytest.mark.parametrize("command", ["train", "retrain"])
def test_a_family_without_its_framework_fails_in_one_line(family, framework, command, home, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, framework, None)

    code = run_cli(monkeypatch, command, "--family", family)

    assert (code, capsys.readouterr().err) == (1, MESSAGES[family])
    # Refused before loading data, opening the MLflow store or reading feedback.
    assert list(home.iterdir()) == []


@pytest.mark.parametrize("missing", ["tf2onnx", "keras"])
def test_any_missing_piece_of_the_extra_counts(missing, home, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, missing, None)

    assert run_cli(monkeypatch, "train", "--family", "gru") == 1
    assert capsys.readouterr().err == MESSAGES["gru"]
