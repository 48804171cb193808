"""The Helm chart (deploy/helm/badbuzz), checked without a cluster: ``helm lint``, ``helm
template`` with the default values and a production-like file, every rendered core
resource against the Kubernetes OpenAPI schemas (kubernetes-validate; custom resources
such as KEDA's or the Prometheus Operator's have no schema there and only warn), and the
agreements test_compose.py checks for docker-compose: real settings, real ``badbuzz``
subcommands, ports and probe paths the worker and the console serve. Helm comes from scripts/bootstrap.sh
(built from the Go module proxy into var/tools/bin); without it these tests skip."""
from __future__ import annotations

import inspect
import re
import shlex
import shutil
import subprocess
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import get_args

import click
import kubernetes_validate
import pytest
import uvicorn.config
import yaml
from pydantic import SecretStr

from badbuzz.cli import cli
from config.settings import Settings
from config.topics import faust_topics
from tests.unit.test_compose import _field_for, _known_env_names, dockerfile_instructions, exported_metric_names

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy/helm/badbuzz"
PRODUCTION = CHART / "ci/production-values.yaml"
KUBE_VERSION = "1.33.0"
BADBUZZ_IMAGES = ("badbuzz/worker", "badbuzz/trainer")
# Set from the pod's name in the worker StatefulSet (a static consumer-group member).
GROUP_INSTANCE_ID = "BADBUZZ_GROUP_INSTANCE_ID"
# Read by the console only, from secrets.consoleKeys.
SIGNING_SECRET = "SLACK_SIGNING_SECRET"
# uvicorn's own variable: the proxies whose X-Forwarded-For the console believes.
FORWARDED_ALLOW_IPS = "FORWARDED_ALLOW_IPS"
PENDING_SETTINGS = {GROUP_INSTANCE_ID, SIGNING_SECRET}


def _helm() -> str | None:
    built = REPO / "var/tools/bin/helm"
    return str(built) if built.is_file() else shutil.which("helm")


HELM = _helm()
pytestmark = pytest.mark.skipif(HELM is None, reason="no helm binary (scripts/bootstrap.sh builds one into var/tools/bin when Go is installed)")


def helm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([HELM, *args], capture_output=True, text=True, timeout=120)


def render(*args: str) -> list[dict]:
    done = helm("template", "bb", str(CHART), "--namespace", "air", "--kube-version", KUBE_VERSION, *args)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="module")
def default_docs() -> list[dict]:
    return render()


@pytest.fixture(scope="module")
def production_docs() -> list[dict]:
    return render("-f", str(PRODUCTION))


def one(docs: list[dict], kind: str, name_suffix: str = "") -> dict:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, f"{kind} *{name_suffix}: {[d['metadata']['name'] for d in found]}"
    return found[0]


def pod_specs(docs: list[dict]) -> list[tuple[str, dict]]:
    specs = []
    for doc in docs:
        spec = doc.get("spec", {})
        if doc["kind"] == "CronJob":
            spec = spec["jobTemplate"]["spec"]
        if "template" in spec and "spec" in spec["template"]:
            specs.append((f"{doc['kind']}/{doc['metadata']['name']}", spec["template"]["spec"]))
    return specs


def badbuzz_containers(docs: list[dict]) -> list[tuple[str, dict]]:
    return [
        (f"{owner}/{c['name']}", c) for owner, spec in pod_specs(docs) for c in spec["containers"]
        if c["image"].rsplit(":", 1)[0].endswith(BADBUZZ_IMAGES)
    ]


@pytest.mark.parametrize("values", [[], ["-f", str(PRODUCTION)]], ids=["default", "production"])
def test_helm_lint_passes(values):
    done = helm("lint", str(CHART), "--strict", "--kube-version", KUBE_VERSION, *values)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("which", ["default_docs", "production_docs"])
def test_every_core_resource_matches_the_kubernetes_schema(which, request):
    docs = request.getfixturevalue(which)
    validated = set()
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
            validated.add(doc["kind"])
        except kubernetes_validate.SchemaNotFoundError:
            warnings.warn(f"no schema for {doc['apiVersion']} {doc['kind']}: not validated", stacklevel=1)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {'.'.join(map(str, exc.path))}: {exc.message}")
    assert {"StatefulSet", "Deployment", "Service", "ConfigMap", "Job", "CronJob", "PodDisruptionBudget"} <= validated
    if which == "production_docs":
        assert "Ingress" in validated


def test_the_hpa_variant_matches_the_schema_and_scales_on_an_exported_metric():
    docs = render("-f", str(PRODUCTION), "--set", "autoscaling.keda.enabled=false")
    hpa = one(docs, "HorizontalPodAutoscaler")
    kubernetes_validate.validate(hpa, KUBE_VERSION, strict=True)
    assert not [d for d in docs if d["kind"] in ("ScaledObject", "TriggerAuthentication")]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["pods"]["metric"]["name"] in exported_metric_names()
    assert hpa["spec"]["maxReplicas"] == 12 and hpa["spec"]["minReplicas"] == 2
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": one(docs, "StatefulSet")["metadata"]["name"]}
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300


def settings_from(docs: list[dict]) -> dict[str, str]:
    return one(docs, "ConfigMap", "-config")["data"]


@pytest.mark.parametrize("which", ["default_docs", "production_docs"])
def test_badbuzz_containers_are_configured_only_with_real_settings(which, request):
    docs = request.getfixturevalue(which)
    known = _known_env_names()
    config = settings_from(docs)
    assert not set(config) - known, set(config) - known
    settings = Settings(_env_file=None, **{_field_for(k): v for k, v in config.items()})
    assert settings.web_host == settings.console_host == "0.0.0.0"
    assert settings.console_cookie_secure is True
    containers = badbuzz_containers(docs)
    assert len(containers) == 5  # worker, console, topics, first champion, retrain
    for owner, container in containers:
        names = {e["name"] for e in container.get("env", [])}
        unknown = {n for n in names if n.startswith("BADBUZZ_") or n in known} - known - PENDING_SETTINGS
        assert not unknown, f"{owner}: {unknown} are not settings"
        unrelated = {n for n in names if not n.startswith("BADBUZZ_") and n not in known} - PENDING_SETTINGS - {FORWARDED_ALLOW_IPS}
        assert not unrelated, f"{owner}: {unrelated} configure nothing"
        if "envFrom" not in container:
            # Jobs carry the settings inline: the same ones as the ConfigMap.
            inline = {e["name"]: e["value"] for e in container["env"] if "value" in e}
            assert inline == config, owner


def test_the_group_instance_id_is_a_setting():
    if GROUP_INSTANCE_ID not in _known_env_names():
        pytest.skip(f"{GROUP_INSTANCE_ID} is not a setting yet (config/settings.py gains group_instance_id separately)")
    assert GROUP_INSTANCE_ID in _known_env_names()


def test_the_slack_signing_secret_is_a_secret_setting():
    if SIGNING_SECRET not in _known_env_names():
        pytest.skip(f"{SIGNING_SECRET} is not a setting yet (config/settings.py gains it with the console's Slack requests)")
    assert SIGNING_SECRET in secret_settings()


def test_the_console_trusts_forwarded_addresses_only_from_the_configured_proxies(default_docs, production_docs):
    assert f'os.environ.get("{FORWARDED_ALLOW_IPS}"' in inspect.getsource(uvicorn.config.Config)
    (console,) = one(default_docs, "Deployment", "-console")["spec"]["template"]["spec"]["containers"]
    assert FORWARDED_ALLOW_IPS not in {e["name"] for e in console.get("env", [])}
    (console,) = one(production_docs, "Deployment", "-console")["spec"]["template"]["spec"]["containers"]
    assert {"name": FORWARDED_ALLOW_IPS, "value": "10.0.0.0/8"} in console["env"]


def test_the_worker_has_a_static_group_identity_from_its_pod_name(default_docs):
    worker = one(default_docs, "StatefulSet")
    (container,) = worker["spec"]["template"]["spec"]["containers"]
    identity = next(e for e in container["env"] if e["name"] == GROUP_INSTANCE_ID)
    assert identity["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_production_values_reach_the_settings(production_docs):
    config = settings_from(production_docs)
    settings = Settings(_env_file=None, **{_field_for(k): v for k, v in config.items()})
    assert settings.kafka_security_protocol == "SASL_SSL" and settings.kafka_sasl_mechanism == "SCRAM-SHA-512"
    assert settings.kafka_sasl_username == "badbuzz" and settings.kafka_sasl_password is None
    assert str(settings.kafka_ssl_cafile) == "/etc/badbuzz/kafka-tls/ca.crt"
    assert settings.redis_url.startswith("rediss://") and str(settings.redis_ssl_ca_file) == "/etc/badbuzz/redis-tls/ca.crt"
    assert settings.topic_partitions == 12 and settings.slack_channel == "#bad-buzz"
    assert settings.watch_terms == ["delay", "cancel", "lost luggage", "refund", "strike"]
    assert settings.tracking_uri == "http://bb-badbuzz-mlflow:5000"
    worker = one(production_docs, "StatefulSet")["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m["name"] for m in worker["containers"][0]["volumeMounts"]}
    secrets = {v["name"]: v["secret"]["secretName"] for v in worker["volumes"] if "secret" in v}
    assert secrets == {"kafka-tls": "kafka-cluster-ca", "redis-tls": "redis-ca"}
    assert mounts["/etc/badbuzz/kafka-tls"] == "kafka-tls" and mounts["/etc/badbuzz/redis-tls"] == "redis-tls"


def secret_settings() -> set[str]:
    return {
        field.validation_alias if isinstance(field.validation_alias, str) else f"BADBUZZ_{name.upper()}"
        for name, field in Settings.model_fields.items() if SecretStr in get_args(field.annotation)
    }


@pytest.mark.parametrize("which", ["default_docs", "production_docs"])
def test_secrets_come_only_from_the_existing_secret(which, request):
    docs = request.getfixturevalue(which)
    secret = secret_settings()
    assert secret - {SIGNING_SECRET} == {
        "BADBUZZ_KAFKA_SASL_PASSWORD", "BADBUZZ_REDIS_PASSWORD", "SLACK_WEBHOOK_URL", "SLACK_BOT_TOKEN", "APPLICATIONINSIGHTS_CONNECTION_STRING",
        "BADBUZZ_RENOTIFY_SLACK_WEBHOOK_URL",
    }
    assert not secret & set(settings_from(docs))
    assert not [d for d in docs if d["kind"] == "Secret"], "the chart must not hold secrets"
    for owner, container in badbuzz_containers(docs):
        for entry in container.get("env", []):
            if entry["name"] in secret:
                assert "value" not in entry, f"{owner}: {entry['name']} has a literal value"
    if which == "production_docs":
        for owner, container in badbuzz_containers(docs):
            refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})}
            expected = secret | {SIGNING_SECRET} if owner.endswith("-console/console") else secret - {SIGNING_SECRET}
            assert set(refs) == expected, owner
            assert {r["name"] for r in refs.values()} == {"badbuzz-secrets"}
            assert all(r["optional"] is True for r in refs.values()), owner


def test_a_secret_in_config_is_refused():
    done = helm("template", "bb", str(CHART), "--kube-version", KUBE_VERSION, "--set", "config.SLACK_BOT_TOKEN=xoxb-1")
    assert done.returncode != 0
    assert "config.SLACK_BOT_TOKEN is a secret: put it in the Secret named by secrets.existingSecret (key slack-bot-token)" in done.stderr
    done = helm("template", "bb", str(CHART), "--kube-version", KUBE_VERSION, "--set", "config.BADBUZZ_TOPIC_PARTITIONS=8")
    assert done.returncode != 0 and "config.BADBUZZ_TOPIC_PARTITIONS is set by the chart from its own values" in done.stderr
    done = helm("template", "bb", str(CHART), "--kube-version", KUBE_VERSION, "--set", "config.SLACK_SIGNING_SECRET=abc")
    assert done.returncode != 0
    assert "config.SLACK_SIGNING_SECRET is a secret: put it in the Secret named by secrets.existingSecret (key slack-signing-secret)" in done.stderr
    done = helm("template", "bb", str(CHART), "--kube-version", KUBE_VERSION, "--set", "config.BADBUZZ_CONSOLE_PORT=9000")
    assert done.returncode != 0 and "config.BADBUZZ_CONSOLE_PORT is set by the chart from its own values" in done.stderr


def badbuzz_commands(container: dict) -> list[list[str]]:
    """Each ``badbuzz ...`` invocation a container runs, shell scripts included."""
    argv = [*container.get("command", []), *container.get("args", [])]
    if argv[:2] == ["/bin/sh", "-c"]:
        segments = re.split(r"\|\||&&|\||;", argv[2])
        return [words[1:] if words[0] == "exec" else words for words in map(shlex.split, segments) if "badbuzz" in words[:2]]
    return [argv]


def test_every_command_is_a_real_badbuzz_subcommand(production_docs):
    seen = set()
    for owner, container in badbuzz_containers(production_docs):
        commands = badbuzz_commands(container)
        assert commands, owner
        for argv in commands:
            assert argv[0] == "badbuzz", f"{owner}: {argv}"
            command, ctx_args = cli, argv[1:]
            path = []
            while isinstance(command, click.Group):
                ctx = command.make_context(" ".join(["badbuzz", *path]), list(ctx_args), resilient_parsing=True)
                sub = command.get_command(ctx, ctx_args[0])
                assert sub is not None, f"{owner}: no subcommand {ctx_args[0]!r} in {argv}"
                path.append(ctx_args[0])
                command, ctx_args = sub, ctx_args[1:]
            try:
                command.make_context(" ".join(path), list(ctx_args))
            except click.UsageError as exc:
                pytest.fail(f"{owner}: {' '.join(argv)}: {exc.format_message()}")
            seen.add(" ".join(path))
    assert seen == {"worker", "console", "topics create", "leaderboard", "train", "retrain"}


def test_topics_are_created_as_the_values_say(production_docs):
    job = one(production_docs, "Job", "-topics")
    assert "pre-install" in job["metadata"]["annotations"]["helm.sh/hook"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["badbuzz", "topics", "create", "--partitions=12", "--replication-factor=3", "--min-insync-replicas=2"]
    docs = render("-f", str(PRODUCTION), "--set", "topics.create.enabled=false,topics.strimzi.enabled=true,topics.strimzi.clusterName=main")
    assert not [d for d in docs if d["kind"] == "Job" and d["metadata"]["name"].endswith("-topics")]
    topics = {d["spec"]["topicName"]: d for d in docs if d["kind"] == "KafkaTopic"}
    settings = Settings(_env_file=None, app_id=settings_from(docs)["BADBUZZ_APP_ID"])
    assert set(topics) == {*settings.topics, *faust_topics(settings)}
    assert len({t["metadata"]["name"] for t in topics.values()}) == len(topics)
    for name, topic in topics.items():
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == "main"
        partitions = 1 if name in faust_topics(settings) else 12
        assert (topic["spec"]["partitions"], topic["spec"]["replicas"], topic["spec"]["config"]) == (partitions, 3, {"min.insync.replicas": 2})


def test_the_chart_defaults_to_a_production_kafka_and_maps_the_topic_shape_to_the_settings(default_docs):
    config = settings_from(default_docs)
    assert {k: config[k] for k in config if k.startswith("BADBUZZ_TOPIC_") and k[len("BADBUZZ_TOPIC_"):] not in {"RAW", "DLQ", "ALERTS", "FEEDBACK"}} == {
        "BADBUZZ_TOPIC_PARTITIONS": "12",
        "BADBUZZ_TOPIC_REPLICATION_FACTOR": "3",
        "BADBUZZ_TOPIC_MIN_INSYNC_REPLICAS": "2",
    }
    settings = Settings(_env_file=None, **{_field_for(k): v for k, v in config.items()})
    assert (settings.topic_partitions, settings.topic_replication_factor, settings.topic_min_insync_replicas) == (12, 3, 2)
    (container,) = one(default_docs, "Job", "-topics")["spec"]["template"]["spec"]["containers"]
    assert container["command"][3:] == ["--partitions=12", "--replication-factor=3", "--min-insync-replicas=2"]
    local = settings_from(render("--set", "topics.partitions=4,topics.replicationFactor=1,topics.minInsyncReplicas=1,worker.replicaCount=1"))
    assert (local["BADBUZZ_TOPIC_PARTITIONS"], local["BADBUZZ_TOPIC_REPLICATION_FACTOR"], local["BADBUZZ_TOPIC_MIN_INSYNC_REPLICAS"]) == ("4", "1", "1")


def test_min_insync_above_the_replication_factor_is_refused():
    done = helm("template", "bb", str(CHART), "--kube-version", KUBE_VERSION, "--set", "topics.replicationFactor=1")
    assert done.returncode != 0
    assert "topics.minInsyncReplicas (2) exceeds topics.replicationFactor (1)" in done.stderr
    done = helm("template", "bb", str(CHART), "--kube-version", KUBE_VERSION, "--set", "config.BADBUZZ_TOPIC_REPLICATION_FACTOR=1")
    assert done.returncode != 0 and "config.BADBUZZ_TOPIC_REPLICATION_FACTOR is set by the chart from its own values" in done.stderr


def test_redis_modes_reach_the_settings(default_docs, production_docs):
    assert settings_from(default_docs)["BADBUZZ_REDIS_MODE"] == "standalone"
    assert "BADBUZZ_REDIS_SENTINELS" not in settings_from(default_docs)
    production = settings_from(production_docs)
    assert Settings(_env_file=None, **{_field_for(k): v for k, v in production.items()}).redis_mode == "cluster"
    docs = render("--set", "redis.mode=sentinel,redis.sentinels={sentinel-0.sentinel:26379,sentinel-1.sentinel:26379},redis.sentinelMaster=badbuzz")
    config = settings_from(docs)
    assert {k: v for k, v in config.items() if k.startswith("BADBUZZ_REDIS_") and k != "BADBUZZ_REDIS_URL"} == {
        "BADBUZZ_REDIS_MODE": "sentinel",
        "BADBUZZ_REDIS_SENTINELS": "sentinel-0.sentinel:26379,sentinel-1.sentinel:26379",
        "BADBUZZ_REDIS_SENTINEL_MASTER": "badbuzz",
    }
    settings = Settings(_env_file=None, **{_field_for(k): v for k, v in config.items()})
    assert (settings.sentinel_addresses, settings.redis_sentinel_master) == ([("sentinel-0.sentinel", 26379), ("sentinel-1.sentinel", 26379)], "badbuzz")
    # Hook Jobs get the settings inline: the same Redis there.
    (container,) = one(docs, "Job", "-topics")["spec"]["template"]["spec"]["containers"]
    assert {e["name"]: e.get("value") for e in container["env"]}["BADBUZZ_REDIS_MODE"] == "sentinel"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ("redis.mode=sentinel", "redis.sentinels is required with redis.mode sentinel"),
        ("redis.mode=replicated", 'redis.mode is "replicated": standalone, cluster or sentinel'),
    ],
)
def test_an_unusable_redis_mode_is_refused(values, message):
    done = helm("template", "bb", str(CHART), "--kube-version", KUBE_VERSION, "--set", values)
    assert done.returncode != 0 and message in done.stderr


def test_retraining_never_overlaps_and_the_first_champion_is_trained_only_when_missing(production_docs):
    cron = one(production_docs, "CronJob")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid" and cron["spec"]["schedule"] == "30 2 * * *"
    assert cron["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"] > 0
    bootstrap = one(production_docs, "Job", "-bootstrap-model")
    assert bootstrap["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    (container,) = bootstrap["spec"]["template"]["spec"]["containers"]
    assert container["command"][2] == "badbuzz leaderboard --out /tmp/leaderboard.md | grep -qw champion || exec badbuzz train --family tfidf"


def served_paths() -> set[str]:
    """The paths ``stream.web.register`` serves on the worker's web server."""
    from stream import web

    paths = set()
    app = SimpleNamespace(
        page=lambda path, name=None: (paths.add(path), lambda view: view)[1],
        task=lambda fn: fn,
        on_partitions_revoked=SimpleNamespace(connect=lambda handler: handler),
    )
    alerting = SimpleNamespace(cfg=None, scopes=["all"], redis=None)
    web.register(app, Settings(_env_file=None), metrics=None, alerting=alerting, model_info=lambda: None)
    return paths


@pytest.mark.parametrize("which", ["default_docs", "production_docs"])
def test_ports_and_probe_paths_are_served_by_the_worker(which, request):
    docs = request.getfixturevalue(which)
    served = served_paths()
    assert {"/metrics", "/healthz", "/ready", "/dashboard"} <= served
    port = int(settings_from(docs)["BADBUZZ_WEB_PORT"])
    worker = one(docs, "StatefulSet")
    (container,) = worker["spec"]["template"]["spec"]["containers"]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"http": port}
    probes = {kind: container[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert probes["readinessProbe"]["path"] == "/ready"
    assert probes["livenessProbe"]["path"] == probes["startupProbe"]["path"] == "/healthz"
    for probe in probes.values():
        assert probe["path"] in served and probe["port"] == "http"
    for service in (d for d in docs if d["kind"] == "Service" and d["spec"]["selector"] == worker["spec"]["selector"]["matchLabels"]):
        assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
    for monitor in (d for d in docs if d["kind"] in ("PodMonitor", "ServiceMonitor")):
        endpoints = monitor["spec"].get("podMetricsEndpoints") or monitor["spec"]["endpoints"]
        assert [(e["port"], e["path"]) for e in endpoints] == [("http", "/metrics")]
        # The alert rules select the workers by this job name.
        assert endpoints[0]["relabelings"] == [{"targetLabel": "job", "replacement": "badbuzz-worker", "action": "replace"}]


def test_mlflow_probes_its_health_endpoint_which_needs_no_allowed_host(production_docs):
    from mlflow.server.security_utils import HEALTH_ENDPOINTS

    mlflow = one(production_docs, "Deployment", "-mlflow")
    (container,) = mlflow["spec"]["template"]["spec"]["containers"]
    assert {container[p]["httpGet"]["path"] for p in ("startupProbe", "livenessProbe", "readinessProbe")} <= set(HEALTH_ENDPOINTS)
    allowed = next(a for a in container["command"] if a.startswith("--allowed-hosts=")).split("=", 1)[1].split(",")
    assert "bb-badbuzz-mlflow:5000" in allowed and "bb-badbuzz-mlflow.air.svc.cluster.local:5000" in allowed
    assert "--backend-store-uri=$(MLFLOW_BACKEND_STORE_URI)" in container["command"]
    assert container["env"][0]["valueFrom"]["secretKeyRef"] == {"name": "badbuzz-mlflow", "key": "backend-store-uri"}
    assert not [d for d in production_docs if d["kind"] == "PersistentVolumeClaim"]


@pytest.mark.parametrize("which", ["default_docs", "production_docs"])
def test_every_pod_runs_unprivileged_on_a_read_only_root(which, request):
    docs = request.getfixturevalue(which)
    for owner, spec in pod_specs(docs):
        assert spec["securityContext"]["runAsNonRoot"] is True, owner
        assert spec["automountServiceAccountToken"] is False, owner
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, owner
            assert context["allowPrivilegeEscalation"] is False, owner
            assert context["capabilities"]["drop"] == ["ALL"], owner
            assert container["resources"]["requests"] and container["resources"]["limits"]["memory"], owner
            mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
            assert "/tmp" in mounts, owner


def test_the_worker_statefulset_rolls_one_pod_at_a_time_and_has_time_to_commit(default_docs):
    worker = one(default_docs, "StatefulSet")
    spec = worker["spec"]
    assert spec["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}
    pod = spec["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > Settings(_env_file=None).outbox_send_timeout_s * 2
    (container,) = pod["containers"]
    home = settings_from(default_docs)["BADBUZZ_HOME"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert "emptyDir" in volumes[mounts[home]] and "emptyDir" in volumes[mounts[f"{home}/model-cache"]]
    assert one(default_docs, "PodDisruptionBudget", "-worker")["spec"]["maxUnavailable"] == 1
    assert spec["template"]["metadata"]["annotations"]["checksum/config"]


def test_keda_scales_the_worker_group_on_the_raw_topic_within_the_partitions(production_docs):
    scaled = one(production_docs, "ScaledObject")
    config = settings_from(production_docs)
    (trigger,) = scaled["spec"]["triggers"]
    meta = trigger["metadata"]
    assert trigger["type"] == "kafka"
    assert meta["consumerGroup"] == config["BADBUZZ_APP_ID"] and meta["topic"] == config["BADBUZZ_TOPIC_RAW"]
    assert meta["bootstrapServers"] == config["BADBUZZ_KAFKA_BOOTSTRAP"]
    assert (meta["sasl"], meta["tls"]) == ("scram_sha512", "enable")
    assert scaled["spec"]["maxReplicaCount"] == int(config["BADBUZZ_TOPIC_PARTITIONS"]) == 12
    assert scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300
    auth = one(production_docs, "TriggerAuthentication")
    assert auth["metadata"]["name"] == trigger["authenticationRef"]["name"]
    assert {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]} == {
        "password": ("badbuzz-secrets", "kafka-sasl-password"), "ca": ("kafka-cluster-ca", "ca.crt"),
    }
    assert "replicas" not in one(production_docs, "StatefulSet")["spec"], "the autoscaler owns the replica count"


def test_more_workers_than_partitions_is_refused():
    done = helm("template", "bb", str(CHART), "--kube-version", KUBE_VERSION, "-f", str(PRODUCTION), "--set", "autoscaling.maxReplicas=13")
    assert done.returncode != 0
    assert "autoscaling.maxReplicas (13) exceeds topics.partitions (12)" in done.stderr
    done = helm("template", "bb", str(CHART), "--kube-version", KUBE_VERSION, "--set", "worker.replicaCount=5,topics.partitions=4")
    assert done.returncode != 0 and "worker.replicaCount (5) exceeds topics.partitions (4)" in done.stderr


def test_monitoring_is_rendered_from_the_compose_files(production_docs):
    for copy, source in (("files/alerts.yml", "docker/prometheus/alerts.yml"), ("files/badbuzz-dashboard.json", "docker/grafana/dashboards/badbuzz.json")):
        assert (CHART / copy).read_text() == (REPO / source).read_text(), f"{copy} differs from {source}: copy it again"
    rule = one(production_docs, "PrometheusRule")
    assert rule["spec"]["groups"] == yaml.safe_load((REPO / "docker/prometheus/alerts.yml").read_text())["groups"]
    dashboard = one(production_docs, "ConfigMap", "-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["data"]["badbuzz.json"] == (REPO / "docker/grafana/dashboards/badbuzz.json").read_text().rstrip("\n")


def test_monitoring_and_autoscaling_are_off_by_default(default_docs):
    kinds = {d["kind"] for d in default_docs}
    assert not kinds & {"PodMonitor", "ServiceMonitor", "PrometheusRule", "ScaledObject", "HorizontalPodAutoscaler", "KafkaTopic"}
    assert one(default_docs, "StatefulSet")["spec"]["replicas"] == 2


def test_every_setting_is_reachable_from_the_values(default_docs, tmp_path):
    derived = set(settings_from(render("-f", str(PRODUCTION))))
    secret = secret_settings()
    rest = sorted(_known_env_names() - derived - secret - {GROUP_INSTANCE_ID})
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"config": {name: f"value of {name}" for name in rest}}))
    config = settings_from(render("-f", str(values)))
    assert {name: config.get(name) for name in rest} == {name: f"value of {name}" for name in rest}


def console_paths() -> set[str]:
    """The paths the console's FastAPI app serves."""
    from console.app import create_app

    return {route.path for route in create_app(Settings(_env_file=None)).routes}


@pytest.mark.parametrize("which", ["default_docs", "production_docs"])
def test_the_console_listens_on_its_container_port_and_probes_a_path_it_serves(which, request):
    docs = request.getfixturevalue(which)
    config = settings_from(docs)
    settings = Settings(_env_file=None, **{_field_for(k): v for k, v in config.items()})
    deployment = one(docs, "Deployment", "-console")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    (argv,) = badbuzz_commands(container)
    assert argv[:2] == ["badbuzz", "console"]
    options = cli.get_command(None, "console").make_context("console", argv[2:]).params
    host, port = options["host"] or settings.console_host, options["port"] or settings.console_port
    assert host == "0.0.0.0"
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"http": port}
    assert "/healthz" in console_paths()
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[kind]["httpGet"] == {"path": "/healthz", "port": "http"}, kind
    service = one(docs, "Service", "-console")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert [(p["name"], p["targetPort"]) for p in service["spec"]["ports"]] == [("http", "http")]
    # The same settings as the workers, rolled when they change.
    assert container["envFrom"] == [{"configMapRef": {"name": one(docs, "ConfigMap", "-config")["metadata"]["name"]}}]
    assert deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]


def test_the_console_is_stateless_with_writable_scratch_on_a_read_only_root(default_docs):
    deployment = one(default_docs, "Deployment", "-console")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    home = settings_from(default_docs)["BADBUZZ_HOME"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    for path in (home, f"{home}/model-cache", "/tmp"):
        assert "emptyDir" in volumes[mounts[path]], path
    assert not [d for d in default_docs if d["kind"] == "PersistentVolumeClaim" and "console" in d["metadata"]["name"]]
    assert one(default_docs, "PodDisruptionBudget", "-console")["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    single = render("--set", "console.replicaCount=1")
    assert one(single, "Deployment", "-console")["spec"]["replicas"] == 1
    assert [d["metadata"]["name"] for d in single if d["kind"] == "PodDisruptionBudget"] == ["bb-badbuzz-worker"]
    assert not [d for d in render("--set", "console.enabled=false") if d["metadata"]["name"].endswith("-console")]


def test_the_production_console_is_served_over_tls_by_an_ingress(default_docs, production_docs):
    assert not [d for d in default_docs if d["kind"] == "Ingress"]
    ingress = one(production_docs, "Ingress", "-console")
    spec = ingress["spec"]
    assert spec["ingressClassName"] == "nginx"
    (tls,) = spec["tls"]
    assert tls == {"secretName": "badbuzz-console-tls", "hosts": ["badbuzz.example.com"]}
    assert [rule["host"] for rule in spec["rules"]] == tls["hosts"]
    service = one(production_docs, "Service", "-console")
    port_names = {p["name"] for p in service["spec"]["ports"]}
    for rule in spec["rules"]:
        (path,) = rule["http"]["paths"]
        assert (path["path"], path["pathType"]) == ("/", "Prefix")
        backend = path["backend"]["service"]
        assert backend["name"] == service["metadata"]["name"] and backend["port"]["name"] in port_names
    assert Settings(_env_file=None, **{_field_for(k): v for k, v in settings_from(production_docs).items()}).console_cookie_secure is True
    done = helm("template", "bb", str(CHART), "--kube-version", KUBE_VERSION, "--set", "console.ingress.enabled=true")
    assert done.returncode != 0 and "console.ingress.hosts needs at least one host name when console.ingress.enabled" in done.stderr


def test_the_console_image_holds_the_console_package(default_docs):
    (container,) = one(default_docs, "Deployment", "-console")["spec"]["template"]["spec"]["containers"]
    assert container["image"].rsplit(":", 1)[0] == "badbuzz/worker"
    copied = {args.split()[0] for word, args in dockerfile_instructions(REPO / "docker/worker.Dockerfile") if word == "COPY"}
    sent = (REPO / "docker/worker.Dockerfile.dockerignore").read_text().splitlines()
    if "console" not in copied or "!console/" not in sent:
        pytest.skip("docker/worker.Dockerfile does not copy console/ yet: the console Deployment's `badbuzz console` fails to import it")
    assert (REPO / "console/templates").is_dir()
