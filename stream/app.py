"""The Faust application: where a tweet enters (topic ``tweets.raw``), which agent takes
it (``stream.agents``), and what is wired to what. ``badbuzz worker`` runs this."""
from __future__ import annotations

import logging

import faust
import redis.asyncio as aioredis

from alerting.escalation import Escalator
from alerting.incidents import IncidentStore
from alerting.rules import RuleConfig
from alerting.sinks import AlertSink, ConsoleSink, Dispatcher, KafkaSink, SlackWebhookSink
from badbuzz.settings import Settings
from models.scorer import Scorer
from stream import agents
from stream.counters import Counters
from stream.pipeline import Pipeline

log = logging.getLogger(__name__)


def create_app(settings: Settings, scorer: Scorer) -> faust.App:
    datadir = settings.home / "faust" / settings.app_id
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        datadir=str(datadir),
        web_host=settings.web_host,
        web_port=settings.web_port,
        topic_partitions=settings.topic_partitions,
        consumer_auto_offset_reset="earliest",
        key_serializer="raw",
        value_serializer="raw",
        # An alert or dead letter is only "sent" once every in-sync replica has it.
        producer_acks=-1,
    )
    raw = app.topic(settings.topic_raw, key_type=bytes, value_type=bytes)
    dlq = app.topic(settings.topic_dlq, key_type=bytes, value_type=bytes)
    alerts = app.topic(settings.topic_alerts, key_type=bytes, value_type=bytes)

    async def publish_alert(key: bytes, value: bytes) -> None:
        await (await alerts.send(key=key, value=value))

    def build_pipeline() -> Pipeline:
        redis = aioredis.Redis.from_url(settings.redis_url)
        counters = Counters(redis, prefix=settings.redis_prefix, ttl_s=settings.counter_ttl_s)
        escalator = Escalator(
            counters,
            IncidentStore(redis, prefix=settings.redis_prefix, ttl_s=settings.counter_ttl_s),
            Dispatcher(build_sinks(settings, publish_alert)),
            rule_config(settings),
            agents.scopes_for(settings),
            lambda: scorer.info,
        )
        return Pipeline(settings, scorer, counters, escalator, agents.dead_letter_to(dlq))

    agents.register(app, settings, raw, build_pipeline)
    return app


def rule_config(settings: Settings) -> RuleConfig:
    return RuleConfig(
        window_min=settings.alert_window_min,
        baseline_min=settings.baseline_window_min,
        min_volume=settings.alert_min_volume,
        margin=settings.alert_margin,
        critical_margin=settings.alert_critical_margin,
        floor=settings.alert_floor,
        prior=settings.alert_prior,
        p_value=settings.alert_p_value,
    )


def build_sinks(settings: Settings, publish_alert) -> list[AlertSink]:
    sinks: list[AlertSink] = [ConsoleSink(), KafkaSink(publish_alert)]
    if settings.slack_webhook_url is not None:
        sinks.append(SlackWebhookSink(settings.slack_webhook_url.get_secret_value()))
    log.info("alert sinks: %s", ", ".join(s.name for s in sinks))
    return sinks
