"""Starting and stopping ``badbuzz worker`` processes with a given Settings object — the
demo, the benchmarks and the tests all run real worker processes the same way."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from pydantic import SecretStr

from config.settings import PROJECT_ROOT, Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def settings_env(settings: Settings) -> dict[str, str]:
    """``BADBUZZ_*`` variables that make a child process build exactly ``settings``.
    Fields read under another name (SLACK_WEBHOOK_URL, MLFLOW_TRACKING_URI) are left to
    the inherited environment."""
    env = {}
    for name, field in Settings.model_fields.items():
        value = getattr(settings, name)
        if field.validation_alias is not None or value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, list):
            value = ",".join(value)
        elif isinstance(value, bool):
            value = "true" if value else "false"
        env[f"BADBUZZ_{name.upper()}"] = str(value)
    return env


def start_worker(settings: Settings, log_path: Path, *, base_env: dict[str, str] | None = None, **extra_env: str) -> subprocess.Popen:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in (os.environ if base_env is None else base_env).items() if not k.startswith("BADBUZZ_")}
    env.update(settings_env(settings))
    env.update(extra_env)
    with log_path.open("w") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "badbuzz.cli", "worker"], cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )


def stop_worker(worker: subprocess.Popen, timeout_s: float = 30) -> None:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout_s)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
