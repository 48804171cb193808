"""The one typed settings object. Every knob is an environment variable ``BADBUZZ_<NAME>``
(or a line in ``.env``); the README's configuration table lists them with their defaults."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


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
    topic_partitions: int = 4

    # Redis
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_port: int = 6379
    redis_prefix: str = "bb"

    # Worker
    app_id: str = "badbuzz-detector"
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    batch_size: int = 256
    batch_within_s: float = 0.5
    watch_terms: Annotated[list[str], NoDecode] = ["delay", "cancel", "lost luggage", "refund"]
    # An event older than the newest event seen minus this is still counted in its own
    # minute; beyond it (or older than the counter TTL) it goes to the DLQ.
    allowed_lateness_s: int = 3600
    # Tolerated clock skew for event times ahead of the worker's wall clock.
    future_tolerance_s: int = 300
    counter_ttl_s: int = 48 * 3600
    max_text_chars: int = 10_000

    # Model
    model_name: str = "badbuzz-sentiment"
    model_uri: str = ""
    negative_threshold: float = 0.5

    # Escalation (first rule: short window against the trailing baseline window)
    alert_window_min: int = 15
    baseline_window_min: int = 60
    alert_min_volume: int = 30
    alert_margin: float = 0.15
    alert_floor: float = 0.20
    # The baseline assumed while a scope has too little history to measure one (set it to
    # your traffic's usual negative rate); unset, a scope does not alert until it has history.
    alert_prior: float | None = None
    alert_critical_margin: float = 0.30
    alert_p_value: float = 0.001

    # Sinks. Secrets stay SecretStr so they never render in logs or reprs.
    slack_webhook_url: SecretStr | None = Field(default=None, validation_alias="SLACK_WEBHOOK_URL")

    # MLflow
    mlflow_tracking_uri: str = Field(default="", validation_alias="MLFLOW_TRACKING_URI")

    @field_validator("watch_terms", mode="before")
    @classmethod
    def _split_terms(cls, value: object) -> object:
        # Operators write "delay,cancel" in the environment; JSON lists work too.
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [term.strip().lower() for term in value.split(",") if term.strip()]
        return value

    @field_validator("batch_size", "topic_partitions", "alert_min_volume")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be at least 1")
        return value

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.home / 'mlflow' / 'mlflow.db'}"

    @property
    def artifact_root(self) -> Path:
        return self.home / "mlflow" / "artifacts"

    @property
    def active_model_uri(self) -> str:
        return self.model_uri or f"models:/{self.model_name}@champion"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
