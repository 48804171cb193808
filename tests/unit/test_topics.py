"""Topic creation (``config.topics.ensure_topics`` and ``badbuzz topics create``) against a
recording admin client: what a broker is asked for, and what its answers become; and the
producers that write to those topics, each idempotent with acks=all."""
from __future__ import annotations

import ast
import asyncio
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiokafka.errors import InvalidReplicationFactorError, TopicAlreadyExistsError
from click.testing import CliRunner

from badbuzz.cli import cli
from config import topics
from config.settings import Settings
from models.scorer import ModelInfo

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = Settings(_env_file=None, topic_partitions=4)


class RecordingAdmin:
    """Answers as a broker holding ``existing`` topics; per-topic error codes from ``codes``."""

    instances: list[RecordingAdmin] = []

    def __init__(self, existing=(), codes=None, **_options):
        self.existing = set(existing)
        self.codes = codes or {}
        self.requested = []
        self.closed = False
        RecordingAdmin.instances.append(self)

    async def start(self):
        pass

    async def close(self):
        self.closed = True

    async def list_topics(self):
        return sorted(self.existing)

    async def create_topics(self, new_topics):
        self.requested.extend(new_topics)
        return SimpleNamespace(topic_errors=[(t.name, self.codes.get(t.name, 0), "") for t in new_topics])

    async def describe_topics(self, names):
        return [{"topic": n, "partitions": [{"leader": 1}]} for n in names]


@pytest.fixture
def admin(monkeypatch):
    def install(existing=(), codes=None):
        RecordingAdmin.instances.clear()
        monkeypatch.setattr(topics, "AIOKafkaAdminClient", lambda **options: RecordingAdmin(existing, codes, **options))
    return install


def test_defaults_come_from_the_settings(admin):
    admin()
    created = asyncio.run(topics.ensure_topics(SETTINGS, ["a", "b"]))
    (client,) = RecordingAdmin.instances
    assert created == ["a", "b"]
    assert [(t.name, t.num_partitions, t.replication_factor, t.topic_configs) for t in client.requested] == [
        ("a", 4, 1, {"min.insync.replicas": "1"}),
        ("b", 4, 1, {"min.insync.replicas": "1"}),
    ]
    assert client.closed
    admin()
    production = SETTINGS.model_copy(update={"topic_partitions": 12, "topic_replication_factor": 3, "topic_min_insync_replicas": 2})
    asyncio.run(topics.ensure_topics(production, ["a"]))
    assert [(t.num_partitions, t.replication_factor, t.topic_configs) for t in RecordingAdmin.instances[0].requested] == [(12, 3, {"min.insync.replicas": "2"})]


def test_an_explicit_smaller_replication_factor_caps_the_default_min_insync(admin):
    admin()
    production = SETTINGS.model_copy(update={"topic_replication_factor": 3, "topic_min_insync_replicas": 2})
    asyncio.run(topics.ensure_topics(production, ["a"], partitions=1, replication_factor=1))
    assert [(t.num_partitions, t.replication_factor, t.topic_configs) for t in RecordingAdmin.instances[0].requested] == [(1, 1, {"min.insync.replicas": "1"})]


def test_settings_refuse_min_insync_above_the_replication_factor():
    local = Settings(_env_file=None)
    assert (local.topic_partitions, local.topic_replication_factor, local.topic_min_insync_replicas) == (12, 1, 1)
    with pytest.raises(ValueError, match=r"TOPIC_MIN_INSYNC_REPLICAS \(2\) exceeds TOPIC_REPLICATION_FACTOR \(1\)"):
        Settings(_env_file=None, topic_min_insync_replicas=2)
    with pytest.raises(ValueError, match="must be at least 1"):
        Settings(_env_file=None, topic_replication_factor=0)
    assert Settings(_env_file=None, topic_replication_factor=3, topic_min_insync_replicas=2).topic_min_insync_replicas == 2


def test_the_worker_topics_include_fausts_leader_topic_with_one_partition(admin):
    admin()
    production = SETTINGS.model_copy(update={"topic_replication_factor": 3, "topic_min_insync_replicas": 2})
    created = asyncio.run(topics.ensure_worker_topics(production))
    requested = [(t.name, t.num_partitions, t.replication_factor, t.topic_configs) for c in RecordingAdmin.instances for t in c.requested]
    assert created == [*production.topics, "badbuzz-detector-__assignor-__leader"]
    assert requested == [(name, 4, 3, {"min.insync.replicas": "2"}) for name in production.topics] + [
        ("badbuzz-detector-__assignor-__leader", 1, 3, {"min.insync.replicas": "2"})
    ]


def test_replication_and_min_insync_reach_every_new_topic_only(admin):
    admin(existing={"a"})
    created = asyncio.run(topics.ensure_topics(SETTINGS, ["a", "b", "c"], partitions=12, replication_factor=3, min_insync_replicas=2))
    (client,) = RecordingAdmin.instances
    assert created == ["b", "c"]
    assert [(t.name, t.num_partitions, t.replication_factor, t.topic_configs) for t in client.requested] == [
        ("b", 12, 3, {"min.insync.replicas": "2"}),
        ("c", 12, 3, {"min.insync.replicas": "2"}),
    ]


def test_a_topic_created_meanwhile_is_not_an_error_but_a_refusal_is(admin):
    admin(codes={"a": TopicAlreadyExistsError.errno})
    assert asyncio.run(topics.ensure_topics(SETTINGS, ["a", "b"])) == ["b"]
    admin(codes={"b": InvalidReplicationFactorError.errno})
    with pytest.raises(InvalidReplicationFactorError, match="cannot create topic b"):
        asyncio.run(topics.ensure_topics(SETTINGS, ["a", "b"], replication_factor=3))
    assert RecordingAdmin.instances[-1].closed


def test_min_insync_above_the_replication_factor_is_refused_before_asking_the_broker(admin):
    admin()
    with pytest.raises(ValueError, match="min.insync.replicas 3 exceeds the replication factor 2"):
        asyncio.run(topics.ensure_topics(SETTINGS, ["a"], replication_factor=2, min_insync_replicas=3))
    assert RecordingAdmin.instances == []


def test_cli_creates_the_worker_topics_with_the_asked_shape(admin, monkeypatch):
    monkeypatch.setattr("badbuzz.cli.get_settings", lambda: SETTINGS)
    admin(existing={SETTINGS.topic_alerts})
    result = CliRunner().invoke(cli, ["topics", "create", "--partitions", "12", "--replication-factor", "3", "--min-insync-replicas", "2"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "tweets.raw: created (12 partitions, replication factor 3, min.insync.replicas 2)",
        "tweets.dlq: created (12 partitions, replication factor 3, min.insync.replicas 2)",
        "alerts: exists, left as it is",
        "feedback: created (12 partitions, replication factor 3, min.insync.replicas 2)",
        "badbuzz-detector-__assignor-__leader: created (1 partition, replication factor 3, min.insync.replicas 2)",
    ]
    assert {t.name for t in RecordingAdmin.instances[0].requested} == {"tweets.raw", "tweets.dlq", "feedback"}


def test_cli_defaults_to_the_settings(admin, monkeypatch):
    monkeypatch.setattr("badbuzz.cli.get_settings", lambda: SETTINGS.model_copy(update={"topic_replication_factor": 3, "topic_min_insync_replicas": 2}))
    admin(existing={"badbuzz-detector-__assignor-__leader"})
    result = CliRunner().invoke(cli, ["topics", "create"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "tweets.raw: created (4 partitions, replication factor 3, min.insync.replicas 2)",
        "tweets.dlq: created (4 partitions, replication factor 3, min.insync.replicas 2)",
        "alerts: created (4 partitions, replication factor 3, min.insync.replicas 2)",
        "feedback: created (4 partitions, replication factor 3, min.insync.replicas 2)",
        "badbuzz-detector-__assignor-__leader: exists, left as it is",
    ]


def test_cli_refuses_min_insync_above_replication(admin):
    admin()
    result = CliRunner().invoke(cli, ["topics", "create", "--replication-factor", "1", "--min-insync-replicas", "2"])
    assert result.exit_code == 2
    assert "--min-insync-replicas 2 exceeds --replication-factor 1" in result.output
    assert RecordingAdmin.instances == []


def _producer_calls(path: Path) -> list[ast.Call]:
    tree = ast.parse(path.read_text(), str(path))
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", getattr(n.func, "attr", None)) == "AIOKafkaProducer"]


def test_every_producer_of_the_product_and_its_benchmarks_is_idempotent_with_acks_all():
    """A producer that retries without idempotence can write a tweet, an alert or a feedback
    twice; one without acks=all counts a write that a single broker's loss erases."""
    packages = ["config", "models", "counting", "alerting", "stream", "console", "badbuzz", "training", "benchmarks"]
    sites = {}
    for path in sorted(p for pkg in packages for p in (ROOT / pkg).rglob("*.py")):
        for call in _producer_calls(path):
            options = {k.arg: k.value.value for k in call.keywords if k.arg and isinstance(k.value, ast.Constant)}
            sites[f"{path.relative_to(ROOT)}:{call.lineno}"] = (options.get("enable_idempotence"), options.get("acks"))
    assert {f.split(":")[0] for f in sites} >= {"badbuzz/replay.py", "alerting/feedback.py", "benchmarks/run.py", "benchmarks/recovery.py"}
    assert {site: shape for site, shape in sites.items() if shape != (True, "all")} == {}


def test_the_workers_faust_producer_is_idempotent_with_acks_all(tmp_path):
    from stream.app import create_app

    settings = Settings(_env_file=None, home=tmp_path, topic_replication_factor=3, topic_min_insync_replicas=2)
    app = create_app(settings, SimpleNamespace(info=ModelInfo(family="tfidf", scheme="negative_vs_rest")))
    producer = app.producer
    options = {**producer._settings_default(), **producer._settings_extra()}
    assert (options["enable_idempotence"], options["acks"]) == (True, -1)
    assert (app.conf.topic_replication_factor, app.conf.topic_partitions) == (3, 12)
