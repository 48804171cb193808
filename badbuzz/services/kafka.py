"""Kafka: a single-node KRaft broker+controller on 127.0.0.1, run from the runtime jars of
``org.apache.kafka:kafka_2.13`` that Maven fetches once into a cache folder."""
from __future__ import annotations

import asyncio
import base64
import os
import re
import shutil
import socket
import subprocess
import uuid
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from badbuzz.services.errors import ServiceError
from config.settings import Settings

NAME = "kafka"
MARKER = "kafka.Kafka"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
POM = Path(__file__).with_name("kafka-pom.xml")
# Points every home (e.g. the integration test's tmp home) at one shared jar cache.
LIBS_ENV = "BADBUZZ_KAFKA_LIBS"
COMPLETE_MARKER = ".complete"
JAVA_HINT = "apt-get install -y openjdk-17-jre-headless"
LOCAL_HOSTS = ("127.0.0.1", "localhost")


def run_dir(settings: Settings) -> Path:
    return settings.home / "kafka"


def address(settings: Settings) -> str:
    return f"127.0.0.1:{settings.kafka_port}"


def ports(settings: Settings) -> list[tuple[int, str]]:
    return [
        (settings.kafka_port, "BADBUZZ_KAFKA_PORT"),
        (settings.kafka_controller_port, "BADBUZZ_KAFKA_CONTROLLER_PORT"),
    ]


def config_warning(settings: Settings) -> str | None:
    """Clients read kafka_bootstrap, the broker listens on kafka_port: say when they disagree."""
    local = {f"{host}:{settings.kafka_port}" for host in LOCAL_HOSTS}
    if any(server.strip() in local for server in settings.kafka_bootstrap.split(",")):
        return None
    return (
        f"note: BADBUZZ_KAFKA_BOOTSTRAP={settings.kafka_bootstrap} does not point at the "
        f"local broker on {address(settings)}"
    )


def default_libs_dir(settings: Settings) -> Path:
    return settings.home / "cache" / f"kafka-{settings.kafka_version}" / "libs"


def libs_dir(settings: Settings) -> Path:
    override = os.environ.get(LIBS_ENV)
    return Path(override) if override else default_libs_dir(settings)


def check_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise ServiceError(f"Java 17+ is required to run Kafka: {JAVA_HINT}")
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if match is None:
        raise ServiceError(
            f"Java 17+ is required to run Kafka, cannot tell the version of {java}: {JAVA_HINT}"
        )
    major = int(match.group(1))
    if major == 1 and match.group(2):  # "1.8.0_392" is Java 8
        major = int(match.group(2))
    if major < 17:
        raise ServiceError(
            f"Java 17+ is required to run Kafka, found Java {major} at {java}: {JAVA_HINT}"
        )
    return java


def ensure_jars(settings: Settings, echo: Callable[[str], None] = print) -> Path:
    """Return the folder of broker jars, fetching them with Maven unless already cached."""
    libs = libs_dir(settings)
    if (libs / COMPLETE_MARKER).exists():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ServiceError(
            f"Maven is required to fetch the Kafka jars once (into {libs}): "
            "apt-get install -y maven"
        )
    version = settings.kafka_version
    echo(f"fetching Kafka {version} jars from Maven Central (once, ~50 MB)...")
    # Download beside the cache and move jars in only on success, so an interrupted fetch
    # is retried from scratch and a folder the user pointed us at is never deleted.
    partial = libs.with_name(libs.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    cmd = [
        mvn, "-q", "-B", "-f", str(POM), f"-Dkafka.version={version}",
        "dependency:copy-dependencies", "-DincludeScope=runtime",
        f"-DoutputDirectory={partial}",
    ]
    try:
        result = _run_tool(cmd, timeout=1800)
    except subprocess.TimeoutExpired:
        raise ServiceError(f"fetching Kafka {version} jars with Maven timed out") from None
    jars = sorted(partial.glob("*.jar"))
    if result.returncode != 0 or not jars:
        shutil.rmtree(partial, ignore_errors=True)
        raise ServiceError(
            f"fetching Kafka {version} jars with Maven failed (exit {result.returncode}); "
            f"its last lines:\n{_tail(result.stdout, 15)}"
        )
    libs.mkdir(parents=True, exist_ok=True)
    for jar in jars:
        jar.replace(libs / jar.name)
    shutil.rmtree(partial, ignore_errors=True)
    (libs / COMPLETE_MARKER).write_text(f"kafka {version}: {len(jars)} jars\n")
    echo(f"Kafka jars cached in {libs}")
    return libs


def _run_tool(cmd: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout
    )


def _tail(output: str, lines: int) -> str:
    # Maven prints colour codes even in batch mode.
    plain = re.sub(r"\x1b\[[0-9;]*m", "", output)
    return "\n".join(plain.strip().splitlines()[-lines:])


def cluster_id(settings: Settings) -> str:
    """The KRaft cluster id, generated once per home (the data dir is formatted with it)."""
    return stored_cluster_id(run_dir(settings) / "cluster.id")


def stored_cluster_id(path: Path) -> str:
    """The KRaft cluster id kept in path, generated on first use."""
    if path.exists():
        return path.read_text().strip()
    # Kafka's own format: a random UUID in URL-safe base64 that does not start with "-".
    cid = "-"
    while cid.startswith("-"):
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(cid + "\n")
    return cid


def server_properties(settings: Settings) -> str:
    port, ctrl = settings.kafka_port, settings.kafka_controller_port
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{ctrl}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{ctrl}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(run_dir(settings) / "data"),
        "num.partitions": str(settings.topic_partitions),
        "auto.create.topics.enable": "true",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": "1",
        # The default 50 partitions make the first consumer group join slow on small machines.
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # The 3 s default delays every first consumer-group join (and every test).
        "group.initial.rebalance.delay.ms": "0",
    }
    props.update(_sasl_properties(settings))
    return "".join(f"{key}={value}\n" for key, value in props.items())


def _sasl_properties(settings: Settings) -> dict[str, str]:
    """With BADBUZZ_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT the local broker requires the
    configured PLAIN user, so the client-side security settings are exercised for real."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return {}
    if protocol != "SASL_PLAINTEXT" or settings.kafka_sasl_mechanism != "PLAIN":
        raise ServiceError(
            f"the local broker supports PLAINTEXT or SASL_PLAINTEXT with PLAIN, not {protocol}/{settings.kafka_sasl_mechanism}; "
            "point BADBUZZ_KAFKA_BOOTSTRAP at your own broker for TLS"
        )
    if not settings.kafka_sasl_username or settings.kafka_sasl_password is None:
        raise ServiceError("SASL_PLAINTEXT needs BADBUZZ_KAFKA_SASL_USERNAME and BADBUZZ_KAFKA_SASL_PASSWORD")
    user, password = settings.kafka_sasl_username, settings.kafka_sasl_password.get_secret_value()
    port = settings.kafka_port
    jaas = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="{user}" password="{password}" user_{user}="{password}";'
    )
    return {
        "listeners": f"SASL_PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{settings.kafka_controller_port}",
        "advertised.listeners": f"SASL_PLAINTEXT://127.0.0.1:{port}",
        "inter.broker.listener.name": "SASL_PLAINTEXT",
        "listener.security.protocol.map": "SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT",
        "sasl.enabled.mechanisms": "PLAIN",
        "sasl.mechanism.inter.broker.protocol": "PLAIN",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": jaas,
    }


# shutdownHook=disable: log4j's own hook would stop logging before Kafka's shutdown ends.
LOG4J2_PROPERTIES = """\
status = warn
shutdownHook = disable
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
"""


def write_config(settings: Settings) -> Path:
    """Write server.properties and the log4j2 config; return the properties path."""
    return write_node_config(run_dir(settings), server_properties(settings))


def write_node_config(folder: Path, properties: str) -> Path:
    (folder / "data").mkdir(parents=True, exist_ok=True)
    (folder / "log4j2.properties").write_text(LOG4J2_PROPERTIES)
    props = folder / "server.properties"
    props.touch(mode=0o600)  # may hold the SASL password
    props.write_text(properties)
    return props


def _java_cmd(java: str, settings: Settings, main: str, folder: Path) -> list[str]:
    # "libs/*" goes to the JVM unexpanded (no shell here): the JVM expands the wildcard.
    log_config = folder / "log4j2.properties"
    return [
        java, f"-Dlog4j2.configurationFile={log_config}", "-cp", f"{libs_dir(settings)}/*", main
    ]


def prepare(settings: Settings, echo: Callable[[str], None] = print) -> list[str]:
    """Check prerequisites, fetch jars, write config, format storage; return the command line."""
    java = check_java()
    ensure_jars(settings, echo)
    props = write_config(settings)
    return node_command(java, settings, run_dir(settings), props, cluster_id(settings), heap="512m")


def node_command(java: str, settings: Settings, folder: Path, props: Path, cid: str, *, heap: str) -> list[str]:
    """Format folder's storage with cid unless done; return the command line of its server."""
    if not (folder / "data" / "meta.properties").exists():
        cmd = _java_cmd(java, settings, "kafka.tools.StorageTool", folder)
        cmd += ["format", "-t", cid, "-c", str(props), "--ignore-formatted"]
        result = _run_tool(cmd, timeout=120)
        if result.returncode != 0:
            raise ServiceError(
                f"formatting Kafka storage in {folder} failed (exit {result.returncode}):\n"
                + _tail(result.stdout, 20)
            )
    cmd = _java_cmd(java, settings, "kafka.Kafka", folder)
    return [cmd[0], f"-Xmx{heap}", *cmd[1:], str(props)]


def _run(coro: Coroutine[Any, Any, Any]) -> Any:
    # The caller may already be inside an event loop (an async CLI command, a test).
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _describe_cluster(settings: Settings, timeout: float, bootstrap: str) -> dict[str, Any]:
    from aiokafka.admin import AIOKafkaAdminClient

    from config.connections import kafka_options

    options = {**kafka_options(settings), "bootstrap_servers": bootstrap}
    admin = AIOKafkaAdminClient(**options, request_timeout_ms=int(timeout * 1000))
    try:
        await admin.start()
        return await admin.describe_cluster()
    finally:
        await admin.close()


def probe(settings: Settings, timeout: float = 3.0) -> bool:
    """True when the broker answers a metadata request and lists itself."""
    return bool(broker_ids(settings, settings.kafka_port, timeout))


def broker_ids(settings: Settings, port: int, timeout: float = 3.0) -> set[int]:
    """The brokers the broker on port lists in its metadata; empty when it does not answer."""
    # A plain connect first keeps aiokafka from logging connection errors while we poll.
    try:
        socket.create_connection(("127.0.0.1", port), timeout=timeout).close()
    except OSError:
        return set()
    try:
        describe = _describe_cluster(settings, timeout, f"127.0.0.1:{port}")
        cluster = _run(asyncio.wait_for(describe, timeout * 2))
    except Exception:  # noqa: BLE001 - any client failure means "not ready yet"
        return set()
    return {broker["node_id"] for broker in cluster.get("brokers", [])}
