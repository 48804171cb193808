"""The one typed settings object. Every knob is an environment variable ``BADBUZZ_<NAME>``
(or a line in ``.env``); the README's configuration table lists them with their defaults."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal, get_args

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Test-split metrics the promotion gate may compare; higher is better for each.
PromotionMetric = Literal[
    "test_recall_negative", "test_f1_negative", "test_precision_negative", "test_accuracy", "test_roc_auc"
]
PROMOTION_METRICS: tuple[str, ...] = get_args(PromotionMetric)
# models.bundle.FAMILIES, which everything else reads: settings sit below models/ and
# cannot import it (a unit test keeps the two equal).
ModelFamily = Literal["tfidf", "gru", "transformer"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="BADBUZZ_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # Where local services, the MLflow store and caches keep their state.
    home: Path = PROJECT_ROOT / "var"

    # Kafka
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    kafka_version: str = "4.1.2"
    topic_raw: str = "tweets.raw"
    topic_dlq: str = "tweets.dlq"
    topic_alerts: str = "alerts"
    # The most workers one consumer group keeps busy: a worker beyond it gets no partition.
    topic_partitions: int = 12
    # Local defaults (one broker); a production cluster wants 3 and 2 (the Helm chart's), so an
    # alert survives one broker lost and producing stops rather than keep a single copy.
    topic_replication_factor: int = 1
    topic_min_insync_replicas: int = 1
    kafka_max_message_bytes: int = 1_048_576
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None

    # Redis
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_port: int = 6379
    redis_prefix: str = Field(default="bb", pattern=r"^[^{}\s]+$")
    # standalone: BADBUZZ_REDIS_URL is the server. cluster: it is any node of a Redis
    # Cluster (the client discovers the others). sentinel: BADBUZZ_REDIS_SENTINELS lists
    # the Sentinels, which name the current master of BADBUZZ_REDIS_SENTINEL_MASTER.
    redis_mode: Literal["standalone", "cluster", "sentinel"] = "standalone"
    redis_sentinels: str = ""
    redis_sentinel_master: str = "mymaster"
    redis_password: SecretStr | None = None
    redis_ssl_ca_file: Path | None = None
    # A worker refuses a Redis that may evict or forget counters unless this accepts the risk.
    redis_accept_unsafe: bool = False

    # `badbuzz services up --cluster`: brokers on kafka port..+2 (controllers on +3..+5),
    # Redis Cluster nodes on redis port..+5 (cluster bus on each port + 10000).
    cluster_kafka_port: int = 19092
    cluster_redis_port: int = 17000

    # Worker
    app_id: str = "badbuzz-detector"
    # Static group membership: a stable name per worker (its pod name) hands a restarted
    # worker its partitions back at once, with no rebalance of the others; unset, each start
    # joins as a new member. Two running workers must never share one.
    group_instance_id: str = ""
    # A worker that stops heartbeating loses its partitions after this (Faust's default, 60 s,
    # left a killed worker's partitions idle for a minute).
    kafka_session_timeout_s: float = Field(default=10.0, gt=0)
    kafka_heartbeat_interval_s: float = Field(default=3.0, gt=0)
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    # Under load a batch fills before the wait is over: its posts are counted with one
    # script run, so bigger batches cost Redis less a post (a worker owning 12 partitions
    # writes each partition's share of the batch).
    batch_size: int = 1024
    batch_within_s: float = 0.5
    # How often the live dashboard (/dashboard) fetches fresh numbers.
    dashboard_refresh_s: int = Field(default=15, ge=1)
    watch_terms: Annotated[list[str], NoDecode] = ["delay", "cancel", "lost luggage", "refund"]
    # An event older than the newest event seen minus this is still counted in its own
    # minute; beyond it (or older than the counter TTL) it goes to the DLQ.
    allowed_lateness_s: int = 3600
    # Tolerated clock skew for event times ahead of the worker's wall clock.
    future_tolerance_s: int = 300
    counter_ttl_s: int = 48 * 3600
    # The same post id arriving again from the feed within this many seconds (by Kafka
    # timestamp) is counted once; redeliveries are recognised by offset at any distance.
    dedup_window_s: int = Field(default=600, ge=0)
    # Whose predictions feedback can be checked against: the alert examples' (what people
    # see and answer), or every post's (a Redis key per post for the counter TTL: about
    # 10x the memory of the counts).
    keep_predictions: Literal["examples", "all"] = "examples"
    max_text_chars: int = 10_000

    # Model
    model_name: str = "badbuzz-sentiment"
    model_uri: str = ""

    # Model lifecycle (README "Model lifecycle"). A family name serves that family's newest
    # registered version instead of the champion alias; BADBUZZ_MODEL_URI pins one model.
    model_variant: Literal["", ModelFamily] = ""
    # How often a worker asks the registry where its alias points (0: never, serve the start-up model).
    model_poll_s: float = Field(default=30.0, ge=0)
    # Share of posts the challenger also scores, chosen by a hash of the post id.
    shadow_fraction: float = Field(default=0.1, ge=0, le=1)
    # Batches waiting for the challenger; beyond it shadow work is dropped, never waited for.
    shadow_queue_batches: int = Field(default=32, ge=1)
    drift_psi_alert: float = Field(default=0.25, gt=0)
    drift_oov_alert: float = Field(default=0.30, gt=0, le=1)
    drift_window_min: int = Field(default=60, ge=1)
    drift_min_posts: int = Field(default=500, ge=1)
    drift_check_s: float = Field(default=60.0, gt=0)
    retrain_family: ModelFamily = "tfidf"
    retrain_min_feedback: int = Field(default=2000, ge=1)
    retrain_min_accuracy: float = Field(default=0.82, ge=0, le=1)
    # Feedback with a known verdict needed before its accuracy may trigger a retrain.
    retrain_min_verdicts: int = Field(default=100, ge=1)

    # Escalation (alerting/rules.py; the README's "Escalation rule" explains each knob)
    alert_window_min: int = 15
    alert_short_window_min: int = 5
    # Minutes before the alert window whose negative posts are the drivers' reference.
    baseline_window_min: int = 60
    alert_min_volume: int = 30
    # The opening margin sits a little below the 15-point lift the rule promises to catch:
    # what it observes is the lift plus the calm posts' sampling noise (see README,
    # "bench-alerts").
    alert_margin: float = 0.13
    alert_warning_margin: float = 0.20
    alert_critical_margin: float = 0.30
    alert_warning_volume: int = 100
    alert_critical_volume: int = 300
    alert_floor: float = 0.20
    # The baseline assumed while a scope has too little history to measure one (set it to
    # your traffic's usual negative rate); unset, a scope does not alert until it has history.
    alert_prior: float | None = None
    alert_p_value: float = 0.0002
    alert_resolve_fraction: float = 0.5
    alert_cooldown_min: int = 30
    alert_volume_factor: float = 3.0
    alert_volume_warning_factor: float = 5.0
    alert_volume_critical_factor: float = 10.0
    alert_baseline_hours: int = 24
    alert_baseline_half_life_h: float = 6.0
    alert_seasonal_weeks: int = 4
    alert_seasonal_min_weeks: int = 2
    alert_baseline_min_minutes: int = 60
    alert_model_wrong_threshold: int = 10
    alert_model_window_min: int = 15
    # The timer's period, and how long the watermark may stand still before the timer
    # lets event time follow the wall clock.
    alert_eval_interval_s: float = Field(default=60.0, gt=0)
    alert_idle_s: float = Field(default=120.0, ge=0)
    alert_top_terms: int = 8
    alert_examples: int = 5
    # A link in every alert, e.g. to a dashboard: may use {incident_id} and {alert_id}.
    alert_link_template: str = ""

    # Re-notification of open critical incidents nobody acknowledged (or snoozed): minutes
    # since they last paged (0: never), optionally also to a second Slack webhook.
    renotify_min: float = Field(default=30.0, ge=0)
    renotify_slack_webhook_url: SecretStr | None = None

    # Alert outbox (Redis) and delivery
    outbox_retention_s: int = 7 * 24 * 3600
    outbox_backoff_s: float = Field(default=1.0, gt=0)
    outbox_backoff_max_s: float = Field(default=300.0, gt=0)
    outbox_send_timeout_s: float = Field(default=15.0, gt=0)

    # Feedback on predictions (badbuzz feedback; topic consumed by the worker)
    topic_feedback: str = "feedback"
    feedback_ttl_s: int = 30 * 24 * 3600

    # Sinks. Secrets stay SecretStr so they never render in logs or reprs.
    slack_webhook_url: SecretStr | None = Field(default=None, validation_alias="SLACK_WEBHOOK_URL")
    slack_bot_token: SecretStr | None = Field(default=None, validation_alias="SLACK_BOT_TOKEN")
    slack_channel: str = Field(default="", validation_alias="SLACK_CHANNEL")
    slack_api_url: str = "https://slack.com/api/"
    appinsights_connection_string: SecretStr | None = Field(default=None, validation_alias="APPLICATIONINSIGHTS_CONNECTION_STRING")

    # Console (badbuzz console; docs/console.md). The cookie flag goes off only for plain
    # http on localhost: browsers do not send a Secure cookie over http.
    console_host: str = "127.0.0.1"
    console_port: int = 8080
    console_cookie_secure: bool = True
    console_session_ttl_s: int = Field(default=8 * 3600, ge=60)
    console_max_batch: int = Field(default=100, ge=1)
    # Failed sign-ins allowed per account and client address within the window.
    console_login_attempts: int = Field(default=5, ge=1)
    console_login_window_s: int = Field(default=900, ge=1)
    # The console's address as people reach it: alerts link to their incident page there.
    console_url: str = ""
    # Slack app's signing secret: the console acts on button clicks only when they carry its signature.
    slack_signing_secret: SecretStr | None = Field(default=None, validation_alias="SLACK_SIGNING_SECRET")

    # MLflow
    mlflow_tracking_uri: str = Field(default="", validation_alias="MLFLOW_TRACKING_URI")
    # Promotion gate: a candidate must beat the champion on this metric and may lose at
    # most this much test accuracy.
    promote_metric: PromotionMetric = "test_recall_negative"
    promote_accuracy_tolerance: float = Field(default=0.01, ge=0, le=1)

    @field_validator("watch_terms", mode="before")
    @classmethod
    def _split_terms(cls, value: object) -> object:
        # Operators write "delay,cancel" in the environment; JSON lists work too.
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [term.strip().lower() for term in value.split(",") if term.strip()]
        return value

    @field_validator("batch_size", "topic_partitions", "topic_replication_factor", "topic_min_insync_replicas", "alert_min_volume")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be at least 1")
        return value

    @model_validator(mode="after")
    def _min_insync_within_replicas(self) -> Settings:
        if self.topic_min_insync_replicas > self.topic_replication_factor:
            raise ValueError(
                f"TOPIC_MIN_INSYNC_REPLICAS ({self.topic_min_insync_replicas}) exceeds TOPIC_REPLICATION_FACTOR ({self.topic_replication_factor}):"
                " no write could ever be acknowledged by all the replicas it needs"
            )
        return self

    @model_validator(mode="after")
    def _sentinel_mode_needs_sentinels(self) -> Settings:
        if self.redis_mode == "sentinel" and not self.sentinel_addresses:
            raise ValueError("REDIS_MODE is sentinel but REDIS_SENTINELS is empty: list them as host:port,host:port")
        return self

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        out = []
        for item in self.redis_sentinels.split(","):
            if item.strip():
                host, _, port = item.strip().rpartition(":")
                out.append((host or item.strip(), int(port) if host else 26379))
        return out

    @model_validator(mode="after")
    def _slack_bot_needs_a_channel(self) -> Settings:
        if self.slack_bot_token is not None and not self.slack_channel:
            raise ValueError("SLACK_BOT_TOKEN is set but SLACK_CHANNEL is not: say which channel the bot posts to")
        return self

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.home / 'mlflow' / 'mlflow.db'}"

    @property
    def artifact_root(self) -> Path:
        return self.home / "mlflow" / "artifacts"

    @property
    def topics(self) -> list[str]:
        """Every topic the worker reads or writes."""
        return [self.topic_raw, self.topic_dlq, self.topic_alerts, self.topic_feedback]

    @property
    def active_model_uri(self) -> str:
        return self.model_uri or f"models:/{self.model_name}@champion"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
