"""badbuzz.services without starting any service: prerequisites, ports, config, pid files."""
from __future__ import annotations

import asyncio
import os
import socket
import stat
import subprocess
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

from badbuzz.services import ServiceError, cluster, down, kafka, manager, redis, status, up
from config.settings import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    port = free_port()
    return Settings(
        home=tmp_path / "home",
        kafka_port=port,
        kafka_bootstrap=f"127.0.0.1:{port}",
        kafka_controller_port=free_port(),
        redis_port=free_port(),
    )


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An otherwise empty PATH to put fake tools on."""
    path = tmp_path / "bin"
    path.mkdir()
    monkeypatch.setenv("PATH", str(path))
    return path


def fake_tool(bin_dir: Path, name: str, script: str) -> None:
    tool = bin_dir / name
    tool.write_text(f"#!/bin/sh\n{script}\n")
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)


# --- prerequisites -------------------------------------------------------------------------

def test_missing_java(bin_dir: Path) -> None:
    with pytest.raises(ServiceError) as err:
        kafka.check_java()
    assert str(err.value) == (
        "Java 17+ is required to run Kafka: apt-get install -y openjdk-17-jre-headless"
    )


def test_up_reports_missing_java_before_starting_anything(bin_dir: Path, settings: Settings) -> None:
    with pytest.raises(ServiceError, match=r"^Java 17\+ is required"):
        up(settings, echo=lambda _: None)
    assert not manager.pid_file(settings, redis).exists()


@pytest.mark.parametrize(("banner", "major"), [('openjdk version "11.0.2" 2019-01-15', 11),
                                               ('java version "1.8.0_392"', 8)])
def test_old_java(bin_dir: Path, banner: str, major: int) -> None:
    fake_tool(bin_dir, "java", f"echo '{banner}' >&2")
    with pytest.raises(ServiceError, match=f"found Java {major} at .*apt-get install -y openjdk-17"):
        kafka.check_java()


def test_java_17_accepted(bin_dir: Path) -> None:
    fake_tool(bin_dir, "java", "echo 'openjdk version \"17.0.15\" 2025-04-15' >&2")
    assert kafka.check_java() == str(bin_dir / "java")


def test_missing_redis(bin_dir: Path, settings: Settings) -> None:
    with pytest.raises(ServiceError) as err:
        redis.prepare(settings)
    assert str(err.value) == "redis-server is required: apt-get install -y redis-server"


def test_redis_command(bin_dir: Path, settings: Settings) -> None:
    fake_tool(bin_dir, "redis-server", "exit 0")
    cmd = redis.prepare(settings)
    assert cmd[0] == str(bin_dir / "redis-server")
    assert cmd[cmd.index("--port") + 1] == str(settings.redis_port)
    assert cmd[cmd.index("--bind") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--save") + 1] == ""
    assert cmd[cmd.index("--dir") + 1] == str(settings.home / "redis")


# --- jar cache -----------------------------------------------------------------------------

@pytest.fixture
def libs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "shared-cache" / "libs"
    monkeypatch.setenv(kafka.LIBS_ENV, str(path))
    return path


def test_libs_dir_default_and_override(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(kafka.LIBS_ENV, raising=False)
    assert kafka.libs_dir(settings) == settings.home / "cache" / "kafka-4.1.2" / "libs"
    monkeypatch.setenv(kafka.LIBS_ENV, "/somewhere/libs")
    assert kafka.libs_dir(settings) == Path("/somewhere/libs")


def test_missing_maven_only_matters_without_cache(bin_dir: Path, libs: Path, settings: Settings) -> None:
    with pytest.raises(ServiceError, match=r"^Maven is required .*: apt-get install -y maven$"):
        kafka.ensure_jars(settings, echo=lambda _: None)
    libs.mkdir(parents=True)
    (libs / kafka.COMPLETE_MARKER).touch()
    assert kafka.ensure_jars(settings, echo=lambda _: None) == libs


def test_maven_failure_shows_its_output_and_leaves_no_marker(
    bin_dir: Path, libs: Path, settings: Settings
) -> None:
    fake_tool(bin_dir, "mvn", "echo '[ERROR] Could not resolve org.apache.kafka:kafka_2.13'; exit 1")
    with pytest.raises(ServiceError) as err:
        kafka.ensure_jars(settings, echo=lambda _: None)
    first, *rest = str(err.value).splitlines()
    assert first.startswith("fetching Kafka 4.1.2 jars with Maven failed (exit 1)")
    assert "[ERROR] Could not resolve org.apache.kafka:kafka_2.13" in rest
    assert not (libs / kafka.COMPLETE_MARKER).exists()


def test_jars_fetched_once(bin_dir: Path, libs: Path, settings: Settings, tmp_path: Path) -> None:
    calls = tmp_path / "mvn-calls"
    # Writes one jar into -DoutputDirectory=..., like copy-dependencies.
    fake_tool(bin_dir, "mvn", f"""echo "$@" >> {calls}
for arg in "$@"; do case "$arg" in -DoutputDirectory=*) out="${{arg#-DoutputDirectory=}}";; esac; done
/bin/mkdir -p "$out" && /bin/touch "$out/kafka_2.13-4.1.2.jar" """)
    messages: list[str] = []
    assert kafka.ensure_jars(settings, echo=messages.append) == libs
    assert kafka.ensure_jars(settings, echo=messages.append) == libs
    assert (libs / "kafka_2.13-4.1.2.jar").exists() and (libs / kafka.COMPLETE_MARKER).exists()
    assert not libs.with_name("libs.partial").exists()
    (call,) = calls.read_text().splitlines()
    assert "-Dkafka.version=4.1.2" in call and "dependency:copy-dependencies" in call
    assert "-DincludeScope=runtime" in call
    assert messages[0] == "fetching Kafka 4.1.2 jars from Maven Central (once, ~50 MB)..."


# --- ports ---------------------------------------------------------------------------------

def test_kafka_port_taken(settings: Settings) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        port = squatter.getsockname()[1]
        taken = settings.model_copy(update={"kafka_port": port})
        with pytest.raises(ServiceError) as err:
            up(taken)
    assert str(err.value) == f"port {port} is in use by another process; free it or set BADBUZZ_KAFKA_PORT"


def test_redis_port_taken_by_a_listener(settings: Settings) -> None:
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("0.0.0.0", settings.redis_port))
        squatter.listen()
        with pytest.raises(ServiceError) as err:
            up(settings)
    assert str(err.value) == (
        f"port {settings.redis_port} is in use by another process; free it or set BADBUZZ_REDIS_PORT"
    )


def test_port_free() -> None:
    assert manager.port_free(free_port())


# --- configuration -------------------------------------------------------------------------

def parse_properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


def test_server_properties(settings: Settings) -> None:
    props = parse_properties(kafka.server_properties(settings))
    port, ctrl = settings.kafka_port, settings.kafka_controller_port
    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.quorum.voters"] == f"1@127.0.0.1:{ctrl}"
    assert props["listeners"] == f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{ctrl}"
    assert props["advertised.listeners"] == f"PLAINTEXT://127.0.0.1:{port}"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["log.dirs"] == str(settings.home / "kafka" / "data")
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["auto.create.topics.enable"] == "true"
    assert props["num.partitions"] == str(settings.topic_partitions) == "12"
    for key in ("offsets.topic.replication.factor", "transaction.state.log.replication.factor",
                "default.replication.factor", "transaction.state.log.min.isr", "min.insync.replicas"):
        assert props[key] == "1", key
    assert "0.0.0.0" not in kafka.server_properties(settings)


def test_write_config_and_cluster_id(settings: Settings) -> None:
    props = kafka.write_config(settings)
    assert props == settings.home / "kafka" / "server.properties"
    assert props.read_text() == kafka.server_properties(settings)
    assert "rootLogger.level = INFO" in (settings.home / "kafka" / "log4j2.properties").read_text()
    cid = kafka.cluster_id(settings)
    assert len(cid) == 22 and not cid.startswith("-")
    assert kafka.cluster_id(settings) == cid
    assert (settings.home / "kafka" / "cluster.id").read_text().strip() == cid


def test_config_warnings(settings: Settings) -> None:
    assert kafka.config_warning(settings) is None
    assert redis.config_warning(settings.model_copy(
        update={"redis_url": f"redis://localhost:{settings.redis_port}/0"})) is None
    assert "does not point at the local Redis" in redis.config_warning(settings)
    moved = settings.model_copy(update={"kafka_bootstrap": "broker:9092"})
    assert "does not point at the local broker" in kafka.config_warning(moved)


# --- pid files -----------------------------------------------------------------------------

def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("content", ["dead", "not-ours", "garbage"])
def test_stale_pid_files_are_cleaned(settings: Settings, content: str) -> None:
    # "not-ours": a live process (this test) whose command line is not Kafka's.
    pid_text = {"dead": str(dead_pid()), "not-ours": str(os.getpid()), "garbage": "12ab"}[content]
    for svc in (kafka, redis):
        svc.run_dir(settings).mkdir(parents=True)
        manager.pid_file(settings, svc).write_text(pid_text + "\n")
    states = status(settings)
    assert {name: (s.running, s.pid) for name, s in states.items()} == {
        "kafka": (False, None), "redis": (False, None)}
    assert states["kafka"].address == f"127.0.0.1:{settings.kafka_port}"
    assert not manager.pid_file(settings, kafka).exists()
    assert not manager.pid_file(settings, redis).exists()


def test_down_when_nothing_runs(settings: Settings) -> None:
    assert down(settings) == ["kafka: not running", "redis: not running"]


def test_is_alive_checks_the_command_line() -> None:
    assert manager.is_alive(os.getpid(), "python") or manager.is_alive(os.getpid(), "pytest")
    assert not manager.is_alive(os.getpid(), "kafka.Kafka")
    assert not manager.is_alive(dead_pid(), "python")


# --- process lifecycle, with a stand-in service instead of Kafka/Redis --------------------

def fake_service(tmp_path: Path, script: str, *, ready: bool | str) -> SimpleNamespace:
    """ready: a fixed probe answer, or a line whose presence in the log means ready."""
    marker = f"fake-service-{uuid.uuid4().hex}"
    log = tmp_path / "fake" / "fake.log"
    return SimpleNamespace(
        NAME="fake", MARKER=marker, START_TIMEOUT_S=5.0, STOP_TIMEOUT_S=5.0,
        run_dir=lambda s: tmp_path / "fake",
        address=lambda s: "127.0.0.1:1",
        ports=lambda s: [],
        config_warning=lambda s: None,
        prepare=lambda s, echo: [sys.executable, "-u", "-c", script, marker],
        probe=lambda s: ready if isinstance(ready, bool) else ready in log.read_text(),
    )


@pytest.fixture
def fake_dir(tmp_path: Path) -> Path:
    (tmp_path / "fake").mkdir()
    return tmp_path


def test_lifecycle_of_a_detached_service(
    fake_dir: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = fake_service(fake_dir, "import time; print('hello'); time.sleep(60)", ready="hello")
    monkeypatch.setattr(manager, "SERVICES", (svc,))
    (started,) = up(settings)
    pid = status(settings)["fake"].pid
    assert started.startswith(f"fake: started (pid {pid}) on 127.0.0.1:1 in ")
    assert os.getsid(pid) == pid  # own session: survives the CLI and its terminal
    assert up(settings) == [f"fake: already running (pid {pid}) on 127.0.0.1:1"]
    (stopped,) = down(settings)
    assert stopped.startswith(f"fake: stopped (pid {pid})")
    assert not manager.is_alive(pid, svc.MARKER)
    assert not manager.pid_file(settings, svc).exists()
    assert (fake_dir / "fake" / "fake.log").read_text() == "hello\n"


def test_service_that_never_answers_is_stopped_with_its_log(
    fake_dir: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = fake_service(fake_dir, "import time; print('still booting'); time.sleep(60)", ready=False)
    monkeypatch.setattr(manager, "SERVICES", (svc,))
    with pytest.raises(ServiceError) as err:
        up(settings, timeout=0.5)
    first, *log = str(err.value).splitlines()
    assert first.startswith("fake did not answer on 127.0.0.1:1 within 0.5 s (stopped it)")
    assert log == ["still booting"]
    assert status(settings)["fake"].pid is None


def test_service_that_exits_during_startup(
    fake_dir: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = fake_service(fake_dir, "raise SystemExit('bad config')", ready=False)
    monkeypatch.setattr(manager, "SERVICES", (svc,))
    with pytest.raises(ServiceError, match=r"^fake exited during startup(.|\n)*bad config"):
        up(settings)


async def test_kafka_probe_helper_runs_inside_an_event_loop() -> None:
    assert kafka._run(asyncio.sleep(0, result=42)) == 42


# --- local clusters --------------------------------------------------------------------------

def test_cluster_nodes_form_one_quorum_with_production_durability(settings: Settings) -> None:
    settings = settings.model_copy(update={"cluster_kafka_port": 30000})
    props = dict(line.split("=", 1) for line in cluster.KafkaNode(2).properties(settings).splitlines())
    assert props["node.id"] == "2"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:30003,2@127.0.0.1:30004,3@127.0.0.1:30005"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:30001,CONTROLLER://127.0.0.1:30004"
    assert props["log.dirs"] == str(settings.home / "cluster" / "kafka-2" / "data")
    for key in ("default.replication.factor", "offsets.topic.replication.factor", "transaction.state.log.replication.factor"):
        assert props[key] == "3", key
    assert props["min.insync.replicas"] == props["transaction.state.log.min.isr"] == "2"
    assert cluster.bootstrap(settings) == "127.0.0.1:30000,127.0.0.1:30001,127.0.0.1:30002"


def test_cluster_redis_nodes_persist_and_fail_over_quickly(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redis, "check_redis", lambda: "/usr/bin/redis-server")
    settings = settings.model_copy(update={"cluster_redis_port": 31000})
    node = cluster.RedisNode(6)
    cmd = node.prepare(settings, print)
    options = dict(zip(cmd[2::2], cmd[3::2]))
    assert options["--port"] == "31005"
    assert options["--cluster-enabled"] == options["--appendonly"] == "yes"
    assert options["--cluster-node-timeout"] == "2000"
    assert options["--dir"] == str(settings.home / "cluster" / "redis-6")
    assert node.ports(settings) == [(31005, "BADBUZZ_CLUSTER_REDIS_PORT"), (41005, "BADBUZZ_CLUSTER_REDIS_PORT")]


def test_cluster_up_names_the_setting_of_a_taken_port(settings: Settings) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        taken = sock.getsockname()[1]
        sock.listen()
        busy = settings.model_copy(update={"cluster_kafka_port": taken})
        with pytest.raises(ServiceError) as err:
            cluster.up(busy, echo=lambda _: None)
    assert str(err.value) == f"port {taken} is in use by another process; free it or set BADBUZZ_CLUSTER_KAFKA_PORT"
    assert all(state.pid is None for state in cluster.status(busy).values())


def test_services_env_lines(settings: Settings) -> None:
    settings = settings.model_copy(update={"cluster_kafka_port": 19092, "cluster_redis_port": 17000, "kafka_port": 9092, "redis_port": 6379})
    assert cluster.env_lines(settings, cluster=True) == [
        "export BADBUZZ_KAFKA_BOOTSTRAP=127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094",
        "export BADBUZZ_REDIS_MODE=cluster",
        "export BADBUZZ_REDIS_URL=redis://127.0.0.1:17000,127.0.0.1:17001,127.0.0.1:17002,127.0.0.1:17003,127.0.0.1:17004,127.0.0.1:17005/0",
        "export BADBUZZ_TOPIC_REPLICATION_FACTOR=3",
        "export BADBUZZ_TOPIC_MIN_INSYNC_REPLICAS=2",
    ]
    assert cluster.env_lines(settings, cluster=False) == [
        "export BADBUZZ_KAFKA_BOOTSTRAP=127.0.0.1:9092",
        "export BADBUZZ_REDIS_MODE=standalone",
        "export BADBUZZ_REDIS_URL=redis://127.0.0.1:6379/0",
        "export BADBUZZ_TOPIC_REPLICATION_FACTOR=1",
        "export BADBUZZ_TOPIC_MIN_INSYNC_REPLICAS=1",
    ]
