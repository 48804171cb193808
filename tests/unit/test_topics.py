"""Topic creation (``config.topics.ensure_topics`` and ``badbuzz topics create``) against a
recording admin client: what a broker is asked for, and what its answers become."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from aiokafka.errors import InvalidReplicationFactorError, TopicAlreadyExistsError
from click.testing import CliRunner

from badbuzz.cli import cli
from config import topics
from config.settings import Settings

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


def test_defaults_keep_one_replica_and_the_brokers_min_insync(admin):
    admin()
    created = asyncio.run(topics.ensure_topics(SETTINGS, ["a", "b"]))
    (client,) = RecordingAdmin.instances
    assert created == ["a", "b"]
    assert [(t.name, t.num_partitions, t.replication_factor, t.topic_configs) for t in client.requested] == [("a", 4, 1, {}), ("b", 4, 1, {})]
    assert client.closed


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
    ]
    assert {t.name for t in RecordingAdmin.instances[0].requested} == {"tweets.raw", "tweets.dlq", "feedback"}


def test_cli_refuses_min_insync_above_replication(admin):
    admin()
    result = CliRunner().invoke(cli, ["topics", "create", "--replication-factor", "1", "--min-insync-replicas", "2"])
    assert result.exit_code == 2
    assert "--min-insync-replicas 2 exceeds --replication-factor 1" in result.output
    assert RecordingAdmin.instances == []
