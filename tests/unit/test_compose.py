"""The container deployment, checked without a Docker engine: the compose file, the
Dockerfiles, the Prometheus and Grafana provisioning must agree with the code they run
(real ``badbuzz`` commands, real settings, real metric names). Where a compose v2 binary
exists, ``docker compose config`` validates the file against the compose specification."""
from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import click
import pytest
import yaml
from pydantic import SecretStr

from badbuzz.cli import cli
from config.settings import PROJECT_ROOT, Settings
from stream.metrics import Metrics, SharedState
from stream.pipeline import BatchResult, RawMessage

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
BADBUZZ_DOCKERFILES = {"docker/worker.Dockerfile", "docker/trainer.Dockerfile"}
# One-shot jobs: they run and exit, so a health check means nothing for them.
ONE_SHOT = {"topics", "trainer", "replay"}


def badbuzz_services() -> dict[str, dict]:
    return {name: s for name, s in SERVICES.items() if s.get("build", {}).get("dockerfile") in BADBUZZ_DOCKERFILES}


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def exec_form(args: str) -> list[str]:
    return json.loads(args) if args.startswith("[") else shlex.split(args)


def test_every_service_has_an_image_or_a_build_whose_files_exist():
    for name, service in SERVICES.items():
        assert "image" in service or "build" in service, name
        if "build" in service:
            context = REPO / service["build"]["context"]
            dockerfile = context / service["build"]["dockerfile"]
            assert dockerfile.is_file(), f"{name}: {dockerfile}"


@pytest.mark.parametrize("dockerfile", ["docker/worker.Dockerfile", "docker/trainer.Dockerfile", "docker/mlflow.Dockerfile"])
def test_dockerfiles_copy_only_what_exists_and_is_sent_to_the_build(dockerfile):
    instructions = dockerfile_instructions(REPO / dockerfile)
    ignore = [line.strip() for line in (REPO / f"{dockerfile}.dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*", "the build context must start from nothing"
    kept = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert instructions[0] == ("FROM", "python:3.11-slim")
    copies = [args.split() for word, args in instructions if word == "COPY"]
    assert copies
    for *sources, _dest in copies:
        for source in sources:
            assert (REPO / source).exists(), f"{dockerfile}: COPY {source} does not exist"
            assert source.rstrip("/") in kept, f"{dockerfile}: COPY {source} is excluded by the .dockerignore"
    users = [args for word, args in instructions if word == "USER"]
    assert users and users[-1] != "root", f"{dockerfile} must not run as root"
    env = " ".join(args for word, args in instructions if word == "ENV")
    assert "PIP_NO_CACHE_DIR=1" in env, f"{dockerfile} keeps pip's cache in the image"


def test_the_worker_image_installs_no_training_framework():
    pips = [args for word, args in dockerfile_instructions(REPO / "docker/worker.Dockerfile") if word == "RUN" and "pip install" in args]
    assert pips and all("[" not in args for args in pips), "the worker image installs extras"
    base = tomllib_dependencies()
    assert not [d for d in base if re.match(r"(tensorflow|torch|transformers|keras)\b", d)], base
    trainer = [args for word, args in dockerfile_instructions(REPO / "docker/trainer.Dockerfile") if word == "RUN" and "pip install" in args]
    assert any("${EXTRAS}" in args for args in trainer)


def tomllib_dependencies() -> list[str]:
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]


def _known_env_names() -> set[str]:
    names = set()
    for name, field in Settings.model_fields.items():
        names.add(field.validation_alias if isinstance(field.validation_alias, str) else f"BADBUZZ_{name.upper()}")
    return names


def test_badbuzz_services_are_configured_only_with_real_settings():
    known = _known_env_names()
    services = badbuzz_services()
    assert set(services) == {"worker", "console", "trainer", "replay"}
    for name, service in services.items():
        env = service["environment"]
        unknown = [k for k in env if k not in known]
        assert not unknown, f"{name}: {unknown} are not Settings fields"
        # The values parse as the settings they name.
        settings = Settings(_env_file=None, **{_field_for(k): v for k, v in env.items()})
        assert settings.kafka_bootstrap == "kafka:9092" and settings.redis_url == "redis://redis:6379/0"
        assert settings.tracking_uri == "http://mlflow:5000"


def _field_for(env_name: str) -> str:
    for name, field in Settings.model_fields.items():
        if env_name in (field.validation_alias, f"BADBUZZ_{name.upper()}"):
            return field.validation_alias if isinstance(field.validation_alias, str) else name
    raise AssertionError(env_name)


def _command(service: dict, dockerfile: Path) -> list[str]:
    instructions = dockerfile_instructions(dockerfile)
    entrypoint = service.get("entrypoint") or next((exec_form(a) for w, a in reversed(instructions) if w == "ENTRYPOINT"), [])
    command = service.get("command") or next(exec_form(a) for w, a in reversed(instructions) if w == "CMD")
    return [*entrypoint, *command]


def test_badbuzz_services_run_real_badbuzz_commands():
    seen = {}
    for name, service in badbuzz_services().items():
        argv = _command(service, REPO / service["build"]["dockerfile"])
        assert argv[0] == "badbuzz", f"{name}: {argv}"
        # Click parses the arguments exactly as `badbuzz` would: an unknown subcommand or
        # option raises here.
        group_ctx = cli.make_context("badbuzz", argv[1:], resilient_parsing=False)
        sub = cli.get_command(group_ctx, argv[1])
        assert sub is not None, f"{name}: no subcommand {argv[1]!r}"
        try:
            sub.make_context(argv[1], argv[2:])
        except click.UsageError as exc:  # pragma: no cover - the message is the point
            pytest.fail(f"{name}: {' '.join(argv)}: {exc.format_message()}")
        seen[name] = argv[1]
    assert seen == {"worker": "worker", "console": "console", "trainer": "train", "replay": "replay"}


def test_the_console_listens_on_every_interface_of_its_container_and_is_checked_on_healthz():
    console = SERVICES["console"]
    assert console["command"] == ["badbuzz", "console", "--host", "0.0.0.0"]
    assert "http://127.0.0.1:8080/healthz" in " ".join(console["healthcheck"]["test"])
    assert console["ports"] == ["127.0.0.1:8080:8080"]
    assert set(console["depends_on"]) == {"kafka", "redis", "mlflow"}


def test_the_worker_image_default_command_is_the_compose_command():
    dockerfile = REPO / "docker/worker.Dockerfile"
    cmd = next(exec_form(a) for w, a in reversed(dockerfile_instructions(dockerfile)) if w == "CMD")
    assert cmd == SERVICES["worker"]["command"] == ["badbuzz", "worker"]


def test_workers_scale_out_and_every_long_running_service_has_a_health_check():
    assert SERVICES["worker"]["deploy"]["replicas"] >= 2
    # Replicas cannot share one fixed host port.
    assert all("-" in p.split(":")[-2] for p in SERVICES["worker"]["ports"])
    for name, service in SERVICES.items():
        if name in ONE_SHOT:
            assert "healthcheck" not in service, name
            continue
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
    assert set(SERVICES["replay"]["profiles"]) == {"replay"} and set(SERVICES["trainer"]["profiles"]) == {"train"}


def test_dependencies_and_volumes_are_declared():
    declared = set(COMPOSE["volumes"])
    used = set()
    for name, service in SERVICES.items():
        for dependency, spec in service.get("depends_on", {}).items():
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"
            assert spec["condition"] in {"service_started", "service_healthy", "service_completed_successfully"}
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in SERVICES[dependency], f"{name} waits for {dependency}'s health, which has no check"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (REPO / source).exists(), f"{name}: bind mount {source} missing"
            else:
                used.add(source)
    assert used == declared


def test_topics_are_created_as_the_settings_name_them():
    command = " ".join(SERVICES["topics"]["command"])
    defaults = Settings(_env_file=None)
    for topic in (defaults.topic_raw, defaults.topic_dlq, defaults.topic_alerts):
        assert topic in command
    assert f"--partitions {SERVICES['worker']['environment']['BADBUZZ_TOPIC_PARTITIONS']}" in command


def test_prometheus_scrapes_every_worker_replica():
    config = yaml.safe_load((REPO / "docker/prometheus/prometheus.yml").read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "badbuzz-worker")
    assert job["metrics_path"] == "/metrics"
    (sd,) = job["dns_sd_configs"]
    assert sd["names"] == ["worker"] and sd["port"] == int(SERVICES["worker"]["environment"]["BADBUZZ_WEB_PORT"])
    mounts = {v.split(":")[1] for v in SERVICES["prometheus"]["volumes"] if v.startswith("./")}
    assert set(config["rule_files"]) <= mounts


def exported_metric_names() -> set[str]:
    """Every sample name a worker exports once it has seen some traffic."""
    from prometheus_client.parser import text_string_to_metric_families

    from models.scorer import ModelInfo

    metrics = Metrics()
    metrics.set_model(ModelInfo(family="tfidf", scheme="negative_vs_rest"))
    message = RawMessage(b"{}", timestamp_ms=1, topic="t", partition=0, offset=0)
    metrics.record_batch([message], BatchResult(received=1, counted=1, event_ms=[1]), duration_s=0.1)
    metrics.redis_errors.labels("count").inc()
    metrics.update_shared(
        SharedState(
            redis_up=True,
            watermark_ms=1,
            windows={("all", 15): (1, 1)},
            baselines={"all": 0.2},
            expected_per_minute={"all": 3.0},
            incidents=[("all", "negative_rate", "warning")],
            outbox={("slack", "failed"): 1},
            lag={("t", 0): 1},
        )
    )
    return {s.name for f in text_string_to_metric_families(metrics.exposition().decode()) for s in f.samples}


def _referenced(expr: str) -> set[str]:
    return set(re.findall(r"\bbadbuzz_[a-z_]+", expr))


def test_grafana_dashboard_queries_only_metrics_the_worker_exports():
    exported = exported_metric_names()
    dashboard = json.loads((REPO / "docker/grafana/dashboards/badbuzz.json").read_text())
    datasource = yaml.safe_load((REPO / "docker/grafana/provisioning/datasources/prometheus.yml").read_text())["datasources"][0]
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 15
    referenced = set().union(*map(_referenced, exprs))
    assert referenced and referenced <= exported, referenced - exported
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == datasource["uid"]
            assert panel["title"] and panel["description"]
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("negative rate", "volume", "latency", "dead letters", "alerts", "lag", "model"):
        assert topic in titles, topic
    provider = yaml.safe_load((REPO / "docker/grafana/provisioning/dashboards/badbuzz.yml").read_text())["providers"][0]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in SERVICES["grafana"]["volumes"] if v.startswith("./")}
    assert mounts[provider["options"]["path"]] == "./docker/grafana/dashboards"


def test_prometheus_alert_rules_use_exported_metrics():
    exported = exported_metric_names() | {"up"}
    rules = yaml.safe_load((REPO / "docker/prometheus/alerts.yml").read_text())["groups"][0]["rules"]
    for rule in rules:
        assert _referenced(rule["expr"]) <= exported, rule["alert"]
        assert rule["annotations"]["summary"]
    runbook = markdown_section((REPO / "docs/operations.md").read_text(), "## Runbook")
    missing = [r["alert"] for r in rules if f"**{r['alert']}**" not in runbook]
    assert not missing, f"the runbook in docs/operations.md does not cover {missing}"


def markdown_section(text: str, heading: str) -> str:
    """The body under ``heading`` up to the next heading of the same level."""
    assert f"\n{heading}\n" in f"\n{text}", f"no {heading!r} section"
    level = heading.split(" ", 1)[0]
    return f"\n{text}".split(f"\n{heading}\n", 1)[1].split(f"\n{level} ", 1)[0]


def _compose_binary() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    standalone = shutil.which("docker-compose")
    if standalone:
        version = subprocess.run([standalone, "version", "--short"], capture_output=True, text=True).stdout.strip()
        if version.lstrip("v").split(".")[0] not in ("", "1"):
            return [standalone]
    return None


def test_docker_compose_config_accepts_the_file():
    binary = _compose_binary()
    if binary is None:
        pytest.skip("no Docker Compose v2 here; the structural checks above still ran")
    done = subprocess.run(
        [*binary, "-f", "docker-compose.yml", "--profile", "train", "--profile", "replay", "config", "--quiet"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def configuration_rows(text: str) -> list[tuple[list[str], str]]:
    """(variables, default cell) per row of the configuration tables; in a first cell
    ``BADBUZZ_TOPIC_RAW`` / ``_DLQ``, ``_DLQ`` abbreviates ``BADBUZZ_TOPIC_DLQ``."""
    rows = []
    for line in text.splitlines():
        if not line.startswith("| `"):
            continue
        cells = line.split("|")
        names: list[str] = []
        full = ""
        for token in re.findall(r"`([A-Z_]+)`", cells[1]):
            if token.startswith("_") and full:
                names.append(full.rsplit("_", 1)[0] + token)
            else:
                full = token
                names.append(token)
        rows.append((names, cells[2].strip()))
    return rows


CONFIGURATION = REPO / "docs/configuration.md"


def test_every_setting_is_in_the_configuration_table():
    documented = {name for names, _ in configuration_rows(CONFIGURATION.read_text()) for name in names}
    missing = sorted(_known_env_names() - documented)
    assert not missing, f"docs/configuration.md lacks {missing}"


def _documented_default(cell: str) -> object:
    """``(unset)`` is None, ``(empty…)`` the empty string, otherwise the first code span."""
    if cell.startswith("(unset)"):
        return None
    if cell.startswith("(empty"):
        return ""
    spans = re.findall(r"`([^`]*)`", cell)
    assert spans, cell
    return spans[0]


def _same_default(documented: object, actual: object) -> bool:
    if documented is None or actual is None:
        return documented is actual
    if isinstance(actual, SecretStr):
        actual = actual.get_secret_value()
    if isinstance(actual, list):
        actual = ",".join(actual)
    if isinstance(actual, Path) and actual.is_relative_to(PROJECT_ROOT):
        actual = actual.relative_to(PROJECT_ROOT).as_posix()
    if isinstance(actual, bool):
        return documented == str(actual).lower()
    if isinstance(actual, (int, float)):
        try:
            return float(documented) == float(actual)
        except ValueError:
            return False
    return documented == str(actual)


def test_the_configuration_table_gives_every_setting_its_true_default():
    attributes = {
        field.validation_alias if isinstance(field.validation_alias, str) else f"BADBUZZ_{name.upper()}": name for name, field in Settings.model_fields.items()
    }
    # Field defaults only: the environment of the test run must not leak in.
    defaults = Settings.model_construct()
    checked = set()
    for names, cell in configuration_rows(markdown_section(CONFIGURATION.read_text(), "## Settings")):
        assert names and all(name in attributes for name in names), f"{names}: not all are settings"
        parts = [part.strip() for part in cell.split(" / ")]
        if len(parts) == 1:
            parts *= len(names)
        assert len(parts) == len(names), f"{names}: {len(names)} variables, defaults {cell!r}"
        for name, part in zip(names, parts):
            actual = getattr(defaults, attributes[name])
            assert _same_default(_documented_default(part), actual), f"{name}: documented {part!r}, default {actual!r}"
            checked.add(name)
    assert checked == set(attributes)
