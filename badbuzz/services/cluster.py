"""Local clusters for failover tests and demos: 3 KRaft Kafka nodes (each broker and
controller, from the same jars as the single broker) and a 6-node Redis Cluster (3 masters,
3 replicas), as detached processes whose state lives under ``<home>/cluster``."""
from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from badbuzz.services import kafka, manager, redis
from badbuzz.services.errors import ServiceError
from badbuzz.services.manager import ServiceState
from config.settings import Settings

KAFKA_NODES = 3
REDIS_NODES = 6
REDIS_BUS_OFFSET = 10000  # Redis Cluster's default bus port: the client port + 10000
# Short enough that a killed master fails over in about 3 s, long enough for a busy 2-core box.
REDIS_NODE_TIMEOUT_MS = 2000
FORM_TIMEOUT_S = 90.0
Echo = Callable[[str], None]


def cluster_dir(settings: Settings) -> Path:
    return settings.home / "cluster"


def kafka_port(settings: Settings, node_id: int) -> int:
    return settings.cluster_kafka_port + node_id - 1


def controller_port(settings: Settings, node_id: int) -> int:
    return settings.cluster_kafka_port + KAFKA_NODES + node_id - 1


def redis_ports(settings: Settings) -> list[int]:
    return [settings.cluster_redis_port + i for i in range(REDIS_NODES)]


def bootstrap(settings: Settings) -> str:
    return ",".join(f"127.0.0.1:{kafka_port(settings, n)}" for n in range(1, KAFKA_NODES + 1))


@dataclass(frozen=True)
class KafkaNode:
    """One KRaft node (broker and controller) of the local Kafka cluster."""

    node_id: int
    MARKER: str = field(default="kafka.Kafka", init=False)
    START_TIMEOUT_S: float = field(default=120.0, init=False)  # three JVMs on a small machine
    STOP_TIMEOUT_S: float = field(default=30.0, init=False)

    @property
    def NAME(self) -> str:  # noqa: N802 - the attribute every service has
        return f"broker-{self.node_id}"

    def run_dir(self, settings: Settings) -> Path:
        return cluster_dir(settings) / f"kafka-{self.node_id}"

    def address(self, settings: Settings) -> str:
        return f"127.0.0.1:{kafka_port(settings, self.node_id)}"

    def ports(self, settings: Settings) -> list[tuple[int, str]]:
        return [(kafka_port(settings, self.node_id), "BADBUZZ_CLUSTER_KAFKA_PORT"),
                (controller_port(settings, self.node_id), "BADBUZZ_CLUSTER_KAFKA_PORT")]

    def config_warning(self, settings: Settings) -> str | None:
        return None

    def properties(self, settings: Settings) -> str:
        port, ctrl = kafka_port(settings, self.node_id), controller_port(settings, self.node_id)
        voters = ",".join(f"{n}@127.0.0.1:{controller_port(settings, n)}" for n in range(1, KAFKA_NODES + 1))
        props = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{ctrl}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.run_dir(settings) / "data"),
            "num.partitions": str(settings.topic_partitions),
            "auto.create.topics.enable": "true",
            # Production durability: every partition on all three nodes, a write acknowledged
            # by acks=all is on at least two of them.
            "default.replication.factor": "3",
            "min.insync.replicas": "2",
            "offsets.topic.replication.factor": "3",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "3",
            "transaction.state.log.min.isr": "2",
            "share.coordinator.state.topic.replication.factor": "3",
            "share.coordinator.state.topic.min.isr": "2",
            "unclean.leader.election.enable": "false",
            "group.initial.rebalance.delay.ms": "0",
            # A SIGKILLed broker is fenced, and its partitions led elsewhere, after 5 s
            # instead of the default 9 s.
            "broker.session.timeout.ms": "5000",
            "broker.heartbeat.interval.ms": "1000",
        }
        return "".join(f"{key}={value}\n" for key, value in props.items())

    def prepare(self, settings: Settings, echo: Echo) -> list[str]:
        if settings.kafka_security_protocol != "PLAINTEXT":
            raise ServiceError(f"the local Kafka cluster runs PLAINTEXT only, not {settings.kafka_security_protocol}")
        java = kafka.check_java()
        kafka.ensure_jars(settings, echo)
        props = kafka.write_node_config(self.run_dir(settings), self.properties(settings))
        cid = kafka.stored_cluster_id(cluster_dir(settings) / "kafka.cluster.id")
        return kafka.node_command(java, settings, self.run_dir(settings), props, cid, heap="384m")

    def probe(self, settings: Settings) -> bool:
        return self.node_id in kafka.broker_ids(settings, kafka_port(settings, self.node_id))


@dataclass(frozen=True)
class RedisNode:
    """One node of the local Redis Cluster; which are masters is decided at creation."""

    index: int
    # redis-server rewrites its process title, so only the program name is certain.
    MARKER: str = field(default=redis.MARKER, init=False)
    START_TIMEOUT_S: float = field(default=redis.START_TIMEOUT_S, init=False)
    STOP_TIMEOUT_S: float = field(default=redis.STOP_TIMEOUT_S, init=False)

    @property
    def NAME(self) -> str:  # noqa: N802 - the attribute every service has
        return f"redis-{self.index}"

    def port(self, settings: Settings) -> int:
        return settings.cluster_redis_port + self.index - 1

    def run_dir(self, settings: Settings) -> Path:
        return cluster_dir(settings) / f"redis-{self.index}"

    def address(self, settings: Settings) -> str:
        return f"127.0.0.1:{self.port(settings)}"

    def ports(self, settings: Settings) -> list[tuple[int, str]]:
        port = self.port(settings)
        return [(port, "BADBUZZ_CLUSTER_REDIS_PORT"), (port + REDIS_BUS_OFFSET, "BADBUZZ_CLUSTER_REDIS_PORT")]

    def config_warning(self, settings: Settings) -> str | None:
        return None

    def prepare(self, settings: Settings, echo: Echo) -> list[str]:
        server = redis.check_redis()
        folder = self.run_dir(settings)
        folder.mkdir(parents=True, exist_ok=True)
        config = folder / "redis.conf"
        config.touch(mode=0o600)  # the password stays off the command line
        password = settings.redis_password.get_secret_value() if settings.redis_password else None
        # A replica authenticates to its master with the same password.
        config.write_text(f"requirepass {password}\nmasterauth {password}\n" if password else "")
        return [
            server, str(config),
            "--port", str(self.port(settings)),
            "--bind", "127.0.0.1",
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(REDIS_NODE_TIMEOUT_MS),
            # Workers refuse a Redis without persistence, as on the single node.
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--daemonize", "no",
            "--dir", str(folder),
        ]

    def probe(self, settings: Settings) -> bool:
        return redis_call(settings, self.port(settings), "PING") is not None


def kafka_nodes() -> tuple[KafkaNode, ...]:
    return tuple(KafkaNode(n) for n in range(1, KAFKA_NODES + 1))


def redis_nodes() -> tuple[RedisNode, ...]:
    return tuple(RedisNode(i) for i in range(1, REDIS_NODES + 1))


def nodes() -> tuple[KafkaNode | RedisNode, ...]:
    return (*kafka_nodes(), *redis_nodes())


def redis_call(settings: Settings, port: int, *command: str, timeout: float = 2.0):
    """The reply of one command to the node on port, None when it does not answer."""
    import redis as redis_py

    client = redis_py.Redis(
        host="127.0.0.1", port=port, socket_connect_timeout=timeout, socket_timeout=timeout, decode_responses=True,
        password=settings.redis_password.get_secret_value() if settings.redis_password else None,
    )
    try:
        return client.execute_command(*command)
    except (redis_py.RedisError, OSError):
        return None
    finally:
        client.close()


def cluster_info(settings: Settings, port: int) -> dict[str, str] | None:
    text = redis_call(settings, port, "CLUSTER", "INFO")
    if text is None:
        return None
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def redis_topology(settings: Settings) -> dict[int, tuple[str, int | None]]:
    """port → (role, port of its master for a replica) of every node not flagged as failed,
    as CLUSTER NODES on the first node that answers shows it."""
    for port in redis_ports(settings):
        listing = redis_call(settings, port, "CLUSTER", "NODES")
        if listing is None:
            continue
        rows = [line.split() for line in listing.splitlines() if line.strip()]
        port_of = {row[0]: int(row[1].split("@")[0].rsplit(":", 1)[1]) for row in rows}
        topology: dict[int, tuple[str, int | None]] = {}
        for row in rows:
            flags = row[2].split(",")
            if {"fail", "fail?", "noaddr"} & set(flags):
                continue
            role = "master" if "master" in flags else "replica"
            topology[port_of[row[0]]] = (role, port_of.get(row[3]) if role == "replica" else None)
        return topology
    return {}


def redis_formed(settings: Settings) -> bool:
    """cluster_state:ok on every node, 3 live masters each with a live replica."""
    for port in redis_ports(settings):
        info = cluster_info(settings, port)
        if info is None or info.get("cluster_state") != "ok":
            return False
    topology = redis_topology(settings)
    masters = {port for port, (role, _) in topology.items() if role == "master"}
    replicated = {master for role, master in topology.values() if role == "replica"}
    return len(masters) == REDIS_NODES // 2 and replicated == masters


def _redis_fresh(settings: Settings) -> bool:
    """No node knows another yet: the cluster was never created."""
    infos = [cluster_info(settings, port) for port in redis_ports(settings)]
    return all(info is not None and info.get("cluster_known_nodes") == "1" for info in infos)


def _create_redis_cluster(settings: Settings) -> None:
    cli = shutil.which("redis-cli")
    if cli is None:
        raise ServiceError("redis-cli is required to create the Redis Cluster: apt-get install -y redis-tools")
    env = dict(os.environ)
    if settings.redis_password:
        env["REDISCLI_AUTH"] = settings.redis_password.get_secret_value()
    cmd = [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in redis_ports(settings)), "--cluster-replicas", "1", "--cluster-yes"]
    result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, timeout=120)
    if result.returncode != 0:
        raise ServiceError(f"creating the Redis Cluster failed (exit {result.returncode}): {kafka._tail(result.stdout, 5)}")


def kafka_formed(settings: Settings) -> bool:
    """Every node lists all three brokers as registered."""
    everyone = set(range(1, KAFKA_NODES + 1))
    return all(kafka.broker_ids(settings, kafka_port(settings, n)) == everyone for n in everyone)


def _wait(condition: Callable[[], bool], timeout: float, failure: str) -> float:
    t0 = time.monotonic()
    while not condition():
        if time.monotonic() - t0 > timeout:
            raise ServiceError(failure)
        time.sleep(0.5)
    return time.monotonic() - t0


def up(settings: Settings, *, echo: Echo = print) -> list[str]:
    """Start every node not running yet, create the Redis Cluster on first start, and wait
    until both clusters are usable; return status lines."""
    lines = manager.up(settings, echo=echo, services=nodes())
    created = _redis_fresh(settings)
    if created:
        _create_redis_cluster(settings)
    waited = _wait(lambda: redis_formed(settings), FORM_TIMEOUT_S,
                   f"the Redis Cluster on ports {redis_ports(settings)[0]}-{redis_ports(settings)[-1]} did not reach cluster_state:ok "
                   f"with 3 masters each with a replica within {FORM_TIMEOUT_S:g} s; see the logs under {cluster_dir(settings)}")
    lines.append(f"redis cluster: {'created, ' if created else ''}ok, 3 masters with a replica each (waited {waited:.1f} s)")
    waited = _wait(lambda: kafka_formed(settings), FORM_TIMEOUT_S,
                   f"the Kafka cluster on {bootstrap(settings)} did not register all {KAFKA_NODES} brokers within {FORM_TIMEOUT_S:g} s; "
                   f"see the logs under {cluster_dir(settings)}")
    lines.append(f"kafka cluster: {KAFKA_NODES} brokers registered on {bootstrap(settings)} (waited {waited:.1f} s)")
    return lines


def down(settings: Settings) -> list[str]:
    """Stop every node. The brokers are told together: one by one, the last would wait for
    a controller quorum that is already gone."""
    for node in kafka_nodes():
        if (pid := manager.live_pid(settings, node)) is not None:
            os.kill(pid, signal.SIGTERM)
    return manager.down(settings, services=nodes())


def status(settings: Settings) -> dict[str, ServiceState]:
    """Every node's state; a Redis node's detail is its role (master, or replica of PORT)."""
    states = manager.status(settings, services=nodes())
    topology = redis_topology(settings)
    for node in redis_nodes():
        state = states[node.NAME]
        if state.running and node.port(settings) in topology:
            role, master = topology[node.port(settings)]
            detail = "master" if role == "master" else f"replica of {master}"
            states[node.NAME] = ServiceState(state.name, state.running, state.pid, state.address, detail)
    return states


def cluster_redis_url(settings: Settings) -> str:
    """A URL naming every node: clients start from whichever answers."""
    return "redis://" + ",".join(f"127.0.0.1:{port}" for port in redis_ports(settings)) + "/0"


def env_lines(settings: Settings, *, cluster: bool) -> list[str]:
    """``export BADBUZZ_…=…`` lines that point the CLI and workers at the local services."""
    if cluster:
        values = {
            "BADBUZZ_KAFKA_BOOTSTRAP": bootstrap(settings),
            "BADBUZZ_REDIS_MODE": "cluster",
            "BADBUZZ_REDIS_URL": cluster_redis_url(settings),
            "BADBUZZ_TOPIC_REPLICATION_FACTOR": "3",
            "BADBUZZ_TOPIC_MIN_INSYNC_REPLICAS": "2",
        }
    else:
        values = {
            "BADBUZZ_KAFKA_BOOTSTRAP": kafka.address(settings),
            "BADBUZZ_REDIS_MODE": "standalone",
            "BADBUZZ_REDIS_URL": f"redis://127.0.0.1:{settings.redis_port}/0",
            "BADBUZZ_TOPIC_REPLICATION_FACTOR": "1",
            "BADBUZZ_TOPIC_MIN_INSYNC_REPLICAS": "1",
        }
    return [f"export {name}={shlex.quote(value)}" for name, value in values.items()]
