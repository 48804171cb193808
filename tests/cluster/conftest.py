"""The local clusters (3 Kafka brokers, a 6-node Redis Cluster) on private ports under a tmp
home, started once per session, with helpers that find and SIGKILL a leader or a master."""
from __future__ import annotations

import os
import random
import signal
import time
from dataclasses import dataclass
from typing import Any

import pytest

from badbuzz.services import cluster
from badbuzz.services import kafka as kafka_svc
from badbuzz.services.manager import is_alive, live_pid, port_free
from config.settings import Settings


def _free_range(count: int, *, also_at: int = 0) -> int:
    """The first of count consecutive free ports (and free again at +also_at)."""
    for _ in range(200):
        base = random.randrange(20000, 55000 - also_at)
        ports = [base + i for i in range(count)]
        if all(port_free(p) and (not also_at or port_free(p + also_at)) for p in ports):
            return base
    raise RuntimeError(f"no {count} consecutive free ports found")


@dataclass
class Clusters:
    """The running clusters: settings that point at them, and the faults to inject."""

    settings: Settings
    overrides: dict[str, Any]

    @property
    def bootstrap(self) -> str:
        return cluster.bootstrap(self.settings)

    def _node_pid(self, node) -> int:
        pid = live_pid(self.settings, node)
        assert pid is not None, f"{node.NAME} is not running"
        return pid

    def _sigkill(self, node) -> None:
        pid = self._node_pid(node)
        os.kill(pid, signal.SIGKILL)
        while is_alive(pid, node.MARKER):
            try:
                os.waitpid(pid, os.WNOHANG)  # started by this process: reap it
            except ChildProcessError:
                pass
            time.sleep(0.05)

    def kill_broker(self, node_id: int) -> None:
        self._sigkill(cluster.KafkaNode(node_id))

    async def leader_of(self, topic: str, partition: int) -> int:
        """Node id of the broker that leads topic's partition, as the live brokers say."""
        return (await self.describe(topic))[partition]["leader"]

    async def describe(self, topic: str) -> dict[int, dict[str, Any]]:
        """partition → {leader, replicas, isr} of topic."""
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=10_000)
        await admin.start()
        try:
            (meta,) = await admin.describe_topics([topic])
        finally:
            await admin.close()
        return {p["partition"]: p for p in meta["partitions"]}

    def redis_node(self, port: int) -> cluster.RedisNode:
        return cluster.RedisNode(port - self.settings.cluster_redis_port + 1)

    def redis_master_for(self, key: str) -> int:
        """Port of the master that serves key's slot now."""
        for port in cluster.redis_ports(self.settings):
            slot = cluster.redis_call(self.settings, port, "CLUSTER", "KEYSLOT", key)
            slots = cluster.redis_call(self.settings, port, "CLUSTER", "SLOTS")
            if slot is None or slots is None:
                continue
            for start, end, master, *_ in slots:
                if start <= slot <= end:
                    return int(master[1])
        raise AssertionError(f"no live Redis node knows the master of {key!r}")

    def kill_redis(self, port: int) -> None:
        self._sigkill(self.redis_node(port))

    def redis_roles(self) -> dict[int, tuple[str, int | None]]:
        """port → (master or replica, its master's port) of the nodes not flagged failed."""
        return cluster.redis_topology(self.settings)

    def wait_redis_failover(self, timeout: float = 30.0) -> float:
        """Wait until every live node says cluster_state:ok and 3 live masters serve the
        slots (a killed master's replica promoted); return the seconds waited."""
        t0 = time.monotonic()
        while True:
            live = [port for port in cluster.redis_ports(self.settings) if live_pid(self.settings, self.redis_node(port))]
            infos = [cluster.cluster_info(self.settings, port) for port in live]
            masters = [port for port, (role, _) in self.redis_roles().items() if role == "master"]
            if (all(info and info.get("cluster_state") == "ok" for info in infos)
                    and len(masters) == cluster.REDIS_NODES // 2 and set(masters) <= set(live)):
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                raise AssertionError(f"no Redis failover within {timeout:g} s: masters {masters}, live {live}")
            time.sleep(0.2)

    def heal(self) -> list[str]:
        """Restart whatever was killed (a killed master comes back as a replica) and wait
        until both clusters are whole again."""
        return cluster.up(self.settings, echo=lambda _: None)


@pytest.fixture(scope="session")
def clusters(tmp_path_factory):
    os.environ.setdefault(kafka_svc.LIBS_ENV, str(kafka_svc.default_libs_dir(Settings(_env_file=None))))
    kafka_base = _free_range(2 * cluster.KAFKA_NODES)
    redis_base = _free_range(cluster.REDIS_NODES, also_at=cluster.REDIS_BUS_OFFSET)
    overrides: dict[str, Any] = {
        "home": tmp_path_factory.mktemp("clusters"),
        "cluster_kafka_port": kafka_base,
        "cluster_redis_port": redis_base,
        "kafka_bootstrap": ",".join(f"127.0.0.1:{kafka_base + i}" for i in range(cluster.KAFKA_NODES)),
        "redis_mode": "cluster",
        "redis_url": "redis://" + ",".join(f"127.0.0.1:{redis_base + i}" for i in range(cluster.REDIS_NODES)) + "/0",
        "topic_replication_factor": 3,
        "topic_min_insync_replicas": 2,
    }
    settings = Settings(_env_file=None, **overrides)
    try:
        cluster.up(settings, echo=lambda _: None)
        yield Clusters(settings, overrides)
    finally:
        cluster.down(settings)
