"""The probes a Kubernetes worker pod is judged by, on real worker processes: ``/healthz``
answers as soon as the web server does; ``/ready`` turns 200 once the worker holds
partitions of the raw topic, and a second worker on a one-partition topic, holding none,
stays out of the load balancer with the reason said."""
from __future__ import annotations

import socket
from pathlib import Path

import aiohttp
import pytest

from badbuzz.processes import free_port
from config.topics import ensure_topics
from tests.conftest import running_worker, wait_for

pytestmark = pytest.mark.integration


async def get(url: str) -> tuple[int, str] | None:
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            async with session.get(url) as response:
                return response.status, await response.text()
    except aiohttp.ClientError:
        return None  # the web server is not up yet


def listening_addresses(port: int) -> set[str]:
    """The local addresses of the sockets listening on ``port`` (IPv4 and IPv6), from
    /proc/net/tcp{,6}."""
    found = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                continue
            # /proc prints each 32-bit word of the address in host (little-endian) order.
            raw = b"".join(bytes.fromhex(address[i : i + 8])[::-1] for i in range(0, len(address), 8))
            found.add(socket.inet_ntop(family, raw))
    return found


async def test_ready_once_partitions_are_assigned_and_not_without_any(isolated, tmp_path):
    settings = isolated
    await ensure_topics(settings, [settings.topic_raw], partitions=1)
    await ensure_topics(settings, [settings.topic_dlq, settings.topic_alerts, settings.topic_feedback])
    first = f"http://127.0.0.1:{settings.web_port}"
    with running_worker(settings, tmp_path / "first.log") as worker:
        assert await wait_for(lambda: get(f"{first}/healthz"), timeout=120, what="/healthz", process=worker) == (200, "ok")
        # BADBUZZ_WEB_HOST's default: the web server (dashboard, metrics, probes) is on loopback only.
        assert settings.web_host == "127.0.0.1" and listening_addresses(settings.web_port) == {"127.0.0.1"}

        async def ready(base):
            answer = await get(f"{base}/ready")
            return answer if answer and answer[0] == 200 else None

        status, body = await wait_for(lambda: ready(first), timeout=120, what="the first worker's /ready", process=worker)
        assert (status, body) == (200, '{"ready":true,"partitions":[0]}')

        second_settings = settings.model_copy(update={"web_port": free_port()})
        second = f"http://127.0.0.1:{second_settings.web_port}"
        with running_worker(second_settings, tmp_path / "second.log") as other:
            await wait_for(lambda: get(f"{second}/healthz"), timeout=120, what="the second worker's /healthz", process=other)

            async def settled():
                answers = [await get(f"{first}/ready"), await get(f"{second}/ready")]
                if None in answers or sorted(status for status, _ in answers) != [200, 503]:
                    return None
                return answers

            answers = await wait_for(settled, timeout=120, what="one worker ready, the other not", process=other)
            (idle,) = [body for status, body in answers if status == 503]
            assert idle == f'{{"ready":false,"reason":"no partition of {settings.topic_raw} assigned to this worker"}}'
