"""The promotion gate, aliases and the leaderboard, against a real (temporary) MLflow
store. Most versions come from runs with logged metrics (fast); the scheme gate is also
exercised on two real small trainings."""
from __future__ import annotations

import itertools
import sys
from datetime import UTC, datetime

import mlflow
import pytest

from badbuzz import cli
from config.settings import Settings, get_settings
from models.registry import MANIFEST_DIGEST_TAG, ModelRegistry
from training import registry_ops, tracking
from training.registry_ops import PromotionRefused, VersionSummary, promote, render_leaderboard
from training.train import train

DATA = "d" * 64
SPLIT = "s" * 64
METRIC = "test_recall_negative"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
_names = itertools.count()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    settings = Settings(home=tmp_path_factory.mktemp("home"), _env_file=None)
    client = tracking.open_store(settings)
    return settings, client, tracking.ensure_experiment(client, settings)


@pytest.fixture
def name():
    """Each test registers its own model, so tests share one store but no aliases."""
    return f"model-{next(_names)}"


def make_version(
    store, name: str, *, recall: float, accuracy: float, scheme: str = "negative_vs_rest", data_hash: str = DATA,
    split_hash: str = SPLIT, family: str = "tfidf", extra: dict[str, float] | None = None,
) -> str:
    """A registered version backed by a finished run carrying the given facts."""
    _, client, experiment = store
    run_id = client.create_run(experiment).info.run_id
    tracking.log_values(
        client, run_id, {"family": family, "scheme": scheme},
        {"test_recall_negative": recall, "test_accuracy": accuracy, **(extra or {})},
        {"data_hash": data_hash, "test_split_hash": split_hash},
    )
    client.set_terminated(run_id, "FINISHED")
    return registry(store, name).register(f"{client.get_run(run_id).info.artifact_uri}/model", run_id, manifest_sha256="0" * 64)


def registry(store, name: str) -> ModelRegistry:
    return ModelRegistry(store[0].tracking_uri, name)


def champion(client: mlflow.MlflowClient, name: str) -> str:
    return str(client.get_model_version_by_alias(name, "champion").version)


def tags(client: mlflow.MlflowClient, name: str, version: str) -> dict[str, str]:
    tags = dict(client.get_model_version(name, version).tags)
    # Every version carries its bundle digest from registration; these tests look at the rest.
    assert tags.pop(MANIFEST_DIGEST_TAG) == "0" * 64
    return tags


def gate(store, name, version, **kwargs):
    return promote(registry(store, name), version, metric=METRIC, tolerance=0.01, now=NOW, **kwargs)


def test_first_model_becomes_champion_without_a_comparison(store, name):
    v1 = make_version(store, name, recall=0.5, accuracy=0.5)

    done = gate(store, name, v1)

    assert (done.version, done.previous, done.forced, done.overridden) == ("1", None, False, ())
    assert champion(store[1], name) == "1"
    assert tags(store[1], name, "1") == {
        "promoted_at": "2026-11-25T12:00:00+00:00", "promoted_by_force": "false", "previous_champion": "",
    }


def test_a_version_that_beats_the_champion_within_tolerance_is_promoted(store, name):
    gate(store, name, make_version(store, name, recall=0.80, accuracy=0.85))
    v2 = make_version(store, name, recall=0.81, accuracy=0.84)  # accuracy drops exactly the tolerance

    done = gate(store, name, v2)

    assert (done.version, done.previous) == ("2", "1")
    assert champion(store[1], name) == "2"
    assert tags(store[1], name, "2")["previous_champion"] == "1"


def test_a_version_that_does_not_beat_the_champion_is_refused(store, name):
    gate(store, name, make_version(store, name, recall=0.80, accuracy=0.85))
    v2 = make_version(store, name, recall=0.80, accuracy=0.90)

    with pytest.raises(PromotionRefused) as refused:
        gate(store, name, v2)

    assert refused.value.reasons == ["test_recall_negative 0.8000 does not beat champion v1's 0.8000"]
    assert str(refused.value) == (
        "v2 not promoted to champion: test_recall_negative 0.8000 does not beat champion v1's 0.8000 "
        "(--force promotes anyway)"
    )
    assert champion(store[1], name) == "1"
    assert tags(store[1], name, "2") == {}


def test_an_accuracy_drop_beyond_the_tolerance_is_refused(store, name):
    gate(store, name, make_version(store, name, recall=0.80, accuracy=0.85))
    v2 = make_version(store, name, recall=0.95, accuracy=0.83)

    with pytest.raises(PromotionRefused) as refused:
        gate(store, name, v2)
    assert refused.value.reasons == [
        "test_accuracy 0.8300 is 0.0200 below champion v1's 0.8500, more than the tolerance 0.01"
    ]

    done = promote(registry(store, name), v2, metric=METRIC, tolerance=0.02)
    assert (done.version, champion(store[1], name)) == ("2", "2")


def test_the_metric_is_configurable(store, name):
    gate(store, name, make_version(store, name, recall=0.80, accuracy=0.85, extra={"test_f1_negative": 0.70}))
    v2 = make_version(store, name, recall=0.79, accuracy=0.85, extra={"test_f1_negative": 0.75})

    with pytest.raises(PromotionRefused):
        gate(store, name, v2)
    done = promote(registry(store, name), v2, metric="test_f1_negative", tolerance=0.01)

    assert champion(store[1], name) == done.version == "2"


def test_other_data_or_another_test_split_is_refused(store, name):
    gate(store, name, make_version(store, name, recall=0.80, accuracy=0.85))
    other_data = make_version(store, name, recall=0.90, accuracy=0.90, data_hash="e" * 64)
    other_split = make_version(store, name, recall=0.90, accuracy=0.90, split_hash="t" * 64)

    with pytest.raises(PromotionRefused) as data_refused:
        gate(store, name, other_data)
    with pytest.raises(PromotionRefused) as split_refused:
        gate(store, name, other_split)

    assert data_refused.value.reasons == [
        "trained on other data (hash eeeeeeee vs champion v1's dddddddd), so the test sets are not comparable"
    ]
    assert split_refused.value.reasons == [
        "held-out test set differs from champion v1's (another --limit or data subset?), so the metrics are not comparable"
    ]


def test_a_missing_metric_is_refused_by_name(store, name):
    gate(store, name, make_version(store, name, recall=0.80, accuracy=0.85))
    v2 = make_version(store, name, recall=0.90, accuracy=0.90)

    with pytest.raises(PromotionRefused) as refused:
        promote(registry(store, name), v2, metric="test_f1_negative", tolerance=0.01)

    assert refused.value.reasons == ["v2's run has no test_f1_negative logged", "v1's run has no test_f1_negative logged"]


def test_force_promotes_records_it_and_rollback_is_a_forced_promotion(store, name):
    gate(store, name, make_version(store, name, recall=0.80, accuracy=0.85))
    v2 = make_version(store, name, recall=0.99, accuracy=0.99, scheme="negative_vs_positive")
    reason = (
        "label scheme negative_vs_positive differs from champion v1's negative_vs_rest "
        "(the stream's negative rate would change meaning)"
    )

    done = gate(store, name, v2, force=True)

    assert (done.version, done.previous, done.forced, done.overridden) == ("2", "1", True, (reason,))
    assert champion(store[1], name) == "2"
    assert tags(store[1], name, "2") == {
        "promoted_at": "2026-11-25T12:00:00+00:00", "promoted_by_force": "true", "previous_champion": "1",
        "force_overrode": reason,
    }

    rollback = gate(store, name, "1", force=True)

    assert (rollback.previous, champion(store[1], name)) == ("2", "1")
    assert tags(store[1], name, "1")["previous_champion"] == "2"
    assert tags(store[1], name, "1")["promoted_by_force"] == "true"


def test_challenger_moves_without_gates_and_leaves_when_it_wins(store, name):
    gate(store, name, make_version(store, name, recall=0.80, accuracy=0.85))
    worse = make_version(store, name, recall=0.10, accuracy=0.10, scheme="negative_vs_positive")
    better = make_version(store, name, recall=0.90, accuracy=0.86)
    client = store[1]

    assert gate(store, name, worse, alias="challenger").previous is None
    assert gate(store, name, better, alias="challenger").previous == "2"
    assert champion(client, name) == "1"
    assert tags(client, name, better) == {}

    gate(store, name, better)

    assert client.get_registered_model(name).aliases == {"champion": 3}
    with pytest.raises(ValueError, match="v3 is the champion; a challenger is a version competing with it"):
        gate(store, name, better, alias="challenger")


def test_promoting_the_champion_again_changes_nothing(store, name):
    gate(store, name, make_version(store, name, recall=0.80, accuracy=0.85))

    again = promote(registry(store, name), "1", metric=METRIC, tolerance=0.01, force=True)

    assert again.unchanged
    assert tags(store[1], name, "1")["promoted_by_force"] == "false"


def test_unknown_model_or_version_is_a_one_line_error(store, name):
    with pytest.raises(ValueError, match=f"^no registered model '{name}' in this MLflow store: train one first"):
        gate(store, name, "1")
    make_version(store, name, recall=0.5, accuracy=0.5)
    with pytest.raises(ValueError, match=f"^{name} has no version 9$"):
        gate(store, name, "9")


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """Two tiny real trainings, one per scheme, into a private store."""
    settings = Settings(home=tmp_path_factory.mktemp("real"), _env_file=None)
    rest = train("tfidf", "airline", "negative_vs_rest", settings, limit=300, progress=lambda _: None)
    positive = train("tfidf", "airline", "negative_vs_positive", settings, limit=300, progress=lambda _: None)
    return settings, rest, positive


def test_real_training_of_another_scheme_is_refused_through_the_cli(real, monkeypatch, capsys):
    settings, rest, positive = real
    monkeypatch.setenv("BADBUZZ_HOME", str(settings.home))
    get_settings.cache_clear()
    monkeypatch.setattr(sys, "argv", ["badbuzz", "promote", "--version", positive.version])

    with pytest.raises(SystemExit) as exited:
        cli.main()

    get_settings.cache_clear()
    assert (rest.became_champion, exited.value.code) == (True, 1)
    assert capsys.readouterr().err == (
        f"badbuzz: v{positive.version} not promoted to champion: label scheme negative_vs_positive differs from "
        "champion v1's negative_vs_rest (the stream's negative rate would change meaning) (--force promotes anyway)\n"
    )
    client = tracking.open_store(settings)
    assert champion(client, settings.model_name) == "1"


def test_real_trainings_carry_what_the_gate_compares(real):
    settings, rest, positive = real
    rows = registry_ops.summaries(ModelRegistry.of(settings))

    assert [(r.version, r.family, r.scheme, r.aliases) for r in rows] == [
        ("1", "tfidf", "negative_vs_rest", ("champion",)), ("2", "tfidf", "negative_vs_positive", ()),
    ]
    assert rows[0].data_hash == rows[1].data_hash != ""
    assert rows[0].test_split_hash != rows[1].test_split_hash
    for row, result in zip(rows, (rest, positive)):
        assert row.metrics[METRIC] == pytest.approx(result.metrics[METRIC])
        assert row.metrics["latency_p50_ms"] > 0


ROWS = [
    VersionSummary("1", "tfidf", "negative_vs_rest", "0123456789abcdef", metrics={
        "test_accuracy": 0.81234, "test_recall_negative": 0.85, "test_f1_negative": 0.86,
        "latency_p50_ms": 0.4567, "bundle_size_bytes": 17_654_321,
    }, aliases=("champion",)),
    VersionSummary("2", "gru", "negative_vs_rest", "0123456789abcdef", metrics={
        "test_accuracy": 0.8, "test_recall_negative": 0.9, "test_f1_negative": 0.87,
        "latency_p50_ms": 2.5, "bundle_size_bytes": 4_000_000,
    }, aliases=("challenger",)),
    VersionSummary("3"),
]


def test_leaderboard_ranks_by_the_metric_and_renders_exactly():
    ranked = registry_ops.ranked(ROWS, METRIC)

    assert [r.version for r in ranked] == ["2", "1", "3"]
    assert render_leaderboard(ranked) == (
        "| version | family | scheme           | accuracy | neg. recall | neg. F1 | p50 ms | size MB | data     | aliases    |\n"
        "|---------|--------|------------------|---------:|------------:|--------:|-------:|--------:|----------|------------|\n"
        "| 2       | gru    | negative_vs_rest |   0.8000 |      0.9000 |  0.8700 |   2.50 |    4.00 | 01234567 | challenger |\n"
        "| 1       | tfidf  | negative_vs_rest |   0.8123 |      0.8500 |  0.8600 |   0.46 |   17.65 | 01234567 | champion   |\n"
        "| 3       | -      | -                |        - |           - |       - |      - |       - | -        | -          |\n"
    )


def test_leaderboard_command_prints_and_writes_the_table(store, name, monkeypatch, capsys, tmp_path):
    settings = store[0]
    gate(store, name, make_version(store, name, recall=0.8, accuracy=0.85, extra={"bundle_size_bytes": 2_500_000}))
    make_version(store, name, recall=0.9, accuracy=0.84, family="gru")
    monkeypatch.setenv("BADBUZZ_HOME", str(settings.home))
    monkeypatch.setenv("BADBUZZ_MODEL_NAME", name)
    get_settings.cache_clear()
    out = tmp_path / "board" / "leaderboard.md"
    monkeypatch.setattr(sys, "argv", ["badbuzz", "leaderboard", "--out", str(out)])

    cli.main()

    get_settings.cache_clear()
    table = (
        "| version | family | scheme           | accuracy | neg. recall | neg. F1 | p50 ms | size MB | data     | aliases  |\n"
        "|---------|--------|------------------|---------:|------------:|--------:|-------:|--------:|----------|----------|\n"
        "| 2       | gru    | negative_vs_rest |   0.8400 |      0.9000 |       - |      - |       - | dddddddd | -        |\n"
        "| 1       | tfidf  | negative_vs_rest |   0.8500 |      0.8000 |       - |      - |    2.50 | dddddddd | champion |\n"
    )
    assert capsys.readouterr().out == table + f"written to {out}\n"
    assert out.read_text() == (
        f"# Model leaderboard: {name}\n\nRanked by test_recall_negative on each version's held-out test split; "
        "compare only rows with the same scheme and data.\n\n" + table
    )
