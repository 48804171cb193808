"""A real Kafka broker and Redis started by badbuzz.services in a throw-away home.

Uses free ports, so it runs beside a developer's own `badbuzz services up`. The Kafka jars
come from the default home's cache (BADBUZZ_KAFKA_LIBS points there), so they are fetched
at most once per machine, by whichever of the two runs first. Takes ~5-10 s."""
from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from badbuzz.services import down, kafka, manager, status, up
from config.settings import PROJECT_ROOT, Settings

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return not manager.is_alive(pid, "")  # a zombie counts as gone


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for tool in ("java", "redis-server"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    monkeypatch.setenv(kafka.LIBS_ENV, str(kafka.default_libs_dir(Settings())))
    kafka_port, redis_port = free_port(), free_port()
    return Settings(
        home=tmp_path / "home",
        kafka_port=kafka_port,
        kafka_bootstrap=f"127.0.0.1:{kafka_port}",
        kafka_controller_port=free_port(),
        redis_port=redis_port,
        redis_url=f"redis://127.0.0.1:{redis_port}/0",
    )


def up_in_child(settings: Settings) -> str:
    """Run up() in a process that exits right after, as the CLI does."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
        "BADBUZZ_HOME": str(settings.home),
        "BADBUZZ_KAFKA_PORT": str(settings.kafka_port),
        "BADBUZZ_KAFKA_CONTROLLER_PORT": str(settings.kafka_controller_port),
        "BADBUZZ_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "BADBUZZ_REDIS_PORT": str(settings.redis_port),
        "BADBUZZ_REDIS_URL": settings.redis_url,
    }
    code = "from badbuzz.services import up; from config.settings import Settings; print(*up(Settings()), sep='\\n')"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return result.stdout


async def round_trip(bootstrap: str) -> bytes:
    topic, payload = f"services-live-{uuid.uuid4().hex[:8]}", b'{"text": "lost luggage again"}'
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, payload)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"{topic}-group",
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        message = await asyncio.wait_for(consumer.getone(), timeout=30)
    finally:
        await consumer.stop()
    return message.value


def test_up_status_round_trip_down(settings: Settings) -> None:
    pids: list[int] = []
    try:
        t0 = time.monotonic()
        output = up_in_child(settings)
        print(f"\nup in {time.monotonic() - t0:.1f} s:\n{output}")
        assert "kafka: started" in output and "redis: started" in output
        assert "note:" not in output

        # The child that started them has exited; they are still there, in their own sessions.
        states = status(settings)
        assert states["kafka"].running and states["redis"].running, states
        assert states["kafka"].address == settings.kafka_bootstrap
        pids = [states["kafka"].pid, states["redis"].pid]
        assert all(pid is not None and os.getsid(pid) == pid for pid in pids)

        again = up(settings)
        assert [line.split(" (")[0] for line in again] == ["kafka: already running", "redis: already running"]
        assert [s.pid for s in status(settings).values()] == pids

        assert asyncio.run(round_trip(settings.kafka_bootstrap)) == b'{"text": "lost luggage again"}'
    finally:
        stopped = down(settings)
    print("\n".join(stopped))
    assert [line.split(" (")[0] for line in stopped] == ["kafka: stopped", "redis: stopped"]
    assert all(gone(pid) for pid in pids)
    ports = [settings.kafka_port, settings.kafka_controller_port, settings.redis_port]
    assert all(manager.port_free(port) for port in ports)
    assert not any(s.running for s in status(settings).values())
    assert down(settings) == ["kafka: not running", "redis: not running"]
