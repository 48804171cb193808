"""Start, stop and inspect the local services as detached processes with pid files.

Each service (the kafka and redis modules, or a node of the local clusters) provides NAME,
MARKER (a string in its command line, to tell our process from an unrelated one that reused
the pid), START/STOP timeouts and run_dir / address / ports / config_warning / prepare / probe."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from badbuzz.services import kafka, redis
from badbuzz.services.errors import ServiceError
from config.settings import Settings

Echo = Callable[[str], None]


class Service(Protocol):
    NAME: str
    MARKER: str
    START_TIMEOUT_S: float
    STOP_TIMEOUT_S: float

    def run_dir(self, settings: Settings) -> Path: ...
    def address(self, settings: Settings) -> str: ...
    def ports(self, settings: Settings) -> list[tuple[int, str]]: ...
    def config_warning(self, settings: Settings) -> str | None: ...
    def prepare(self, settings: Settings, echo: Echo) -> list[str]: ...
    def probe(self, settings: Settings) -> bool: ...


SERVICES: tuple[Service, ...] = (kafka, redis)


def _echo(message: str) -> None:
    print(message, flush=True)


@dataclass(frozen=True)
class ServiceState:
    name: str
    running: bool  # process alive and answering
    pid: int | None
    address: str
    detail: str


def pid_file(settings: Settings, svc: Service) -> Path:
    return svc.run_dir(settings) / f"{svc.NAME}.pid"


def log_file(settings: Settings, svc: Service) -> Path:
    return svc.run_dir(settings) / f"{svc.NAME}.log"


def is_alive(pid: int, marker: str) -> bool:
    """True when pid is a live (not zombie) process whose command line contains marker."""
    proc = Path(f"/proc/{pid}")
    if not Path("/proc/self").exists():  # no procfs: trust the pid
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = (proc / "cmdline").read_bytes()
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X") and marker.encode() in cmdline


def live_pid(settings: Settings, svc: Service) -> int | None:
    """The service's pid from its pid file, removing the file when it is stale."""
    path = pid_file(settings, svc)
    try:
        pid = int(path.read_text().strip())
    except FileNotFoundError:
        return None
    except ValueError:
        pid = 0
    if pid > 0 and is_alive(pid, svc.MARKER):
        return pid
    path.unlink(missing_ok=True)
    return None


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR so that TIME_WAIT leftovers of our own stopped service don't count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _reap(pid: int) -> None:
    # Our own children (started by up() in this process) linger as zombies until waited on.
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _stop_pid(pid: int, marker: str, timeout: float) -> str:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return "stopped"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not is_alive(pid, marker):
            return "stopped"
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return "stopped"
    while is_alive(pid, marker):
        _reap(pid)
        time.sleep(0.05)
    return f"killed after {timeout:.0f} s"


def _spawn(settings: Settings, svc: Service, cmd: list[str]) -> subprocess.Popen[bytes]:
    with open(log_file(settings, svc), "wb") as log:
        # A new session: the service outlives the CLI and ignores its terminal's signals.
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            cwd=svc.run_dir(settings), start_new_session=True,
        )
    pid_file(settings, svc).write_text(f"{proc.pid}\n")
    return proc


def _wait_ready(settings: Settings, svc: Service, pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not svc.probe(settings):
        _reap(pid)
        if not is_alive(pid, svc.MARKER):
            pid_file(settings, svc).unlink(missing_ok=True)
            raise ServiceError(
                f"{svc.NAME} exited during startup; last lines of {log_file(settings, svc)}:\n"
                + _log_tail(log_file(settings, svc))
            )
        if time.monotonic() > deadline:
            _stop_pid(pid, svc.MARKER, svc.STOP_TIMEOUT_S)
            pid_file(settings, svc).unlink(missing_ok=True)
            raise ServiceError(
                f"{svc.NAME} did not answer on {svc.address(settings)} within {timeout:g} s "
                f"(stopped it); last lines of {log_file(settings, svc)}:\n"
                + _log_tail(log_file(settings, svc))
            )
        time.sleep(0.2)


def up(
    settings: Settings, *, timeout: float | None = None, echo: Echo = _echo, services: tuple[Service, ...] | None = None
) -> list[str]:
    """Start whatever is not running yet and wait until each answers; return status lines.

    timeout overrides each service's own startup limit (Kafka 60 s, Redis 15 s)."""
    lines: list[str] = []
    to_start: list[Service] = []
    for svc in SERVICES if services is None else services:
        pid = live_pid(settings, svc)
        if pid is None:
            for port, env in svc.ports(settings):
                if not port_free(port):
                    raise ServiceError(
                        f"port {port} is in use by another process; free it or set {env}"
                    )
            to_start.append(svc)
            continue
        if not svc.probe(settings):  # e.g. another `up` is still starting it
            _wait_ready(settings, svc, pid, timeout or svc.START_TIMEOUT_S)
        lines.append(f"{svc.NAME}: already running (pid {pid}) on {svc.address(settings)}")
    # Every prerequisite is checked before anything starts.
    commands = [(svc, svc.prepare(settings, echo)) for svc in to_start]
    started = [(svc, _spawn(settings, svc, cmd), time.monotonic()) for svc, cmd in commands]
    # Quickest first, so each reported time is that service's own.
    for svc, proc, t0 in sorted(started, key=lambda item: item[0].START_TIMEOUT_S):
        _wait_ready(settings, svc, proc.pid, timeout or svc.START_TIMEOUT_S)
        elapsed = time.monotonic() - t0
        lines.append(
            f"{svc.NAME}: started (pid {proc.pid}) on {svc.address(settings)} in {elapsed:.1f} s"
        )
    for svc in SERVICES if services is None else services:
        if warning := svc.config_warning(settings):
            lines.append(warning)
    return lines


def down(settings: Settings, services: tuple[Service, ...] | None = None) -> list[str]:
    """Stop every service (SIGTERM, then SIGKILL after its stop timeout); return status lines."""
    lines: list[str] = []
    for svc in SERVICES if services is None else services:
        pid = live_pid(settings, svc)
        if pid is None:
            lines.append(f"{svc.NAME}: not running")
            continue
        t0 = time.monotonic()
        outcome = _stop_pid(pid, svc.MARKER, svc.STOP_TIMEOUT_S)
        pid_file(settings, svc).unlink(missing_ok=True)
        lines.append(f"{svc.NAME}: {outcome} (pid {pid}) in {time.monotonic() - t0:.1f} s")
    return lines


def status(settings: Settings, services: tuple[Service, ...] | None = None) -> dict[str, ServiceState]:
    states: dict[str, ServiceState] = {}
    for svc in SERVICES if services is None else services:
        pid = live_pid(settings, svc)
        if pid is None:
            running, detail = False, "not running"
        elif svc.probe(settings):
            running, detail = True, "ready"
        else:
            running = False
            detail = f"process alive but not answering; see {log_file(settings, svc)}"
        states[svc.NAME] = ServiceState(svc.NAME, running, pid, svc.address(settings), detail)
    return states
