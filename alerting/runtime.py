"""The alerting side of a worker, assembled from the settings: counters, incidents,
outbox, escalator, sinks and their delivery loop, feedback. Clients are made on first
use, inside the worker's event loop."""
from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from functools import cached_property

import redis.asyncio as aioredis

from alerting.actions import Renotifier
from alerting.alert import Alert
from alerting.delivery import Delivery
from alerting.escalation import WINDOW_SIGNALS, AlertContent, Escalator
from alerting.feedback import MODEL_SCOPE, FeedbackProcessor, FeedbackStore, ModelQualityMonitor, feedback_log
from alerting.incidents import IncidentHistory, IncidentStore
from alerting.outbox import Outbox, OutboxConfig
from alerting.presets import Presets, ScopeConfigs
from alerting.rules import RuleConfig, Signal
from alerting.silences import Silences
from alerting.sinks import AlertSink, ConsoleSink, KafkaSink, on_topic
from alerting.watch_terms import FollowedTerms, WatchTerms
from config.connections import kafka_options, redis_client
from config.settings import Settings
from counting.counters import Counters
from counting.terms import ScopeMatcher
from models.scorer import ModelInfo

log = logging.getLogger(__name__)

# Drift incidents are raised a layer above (stream.drift_monitor) on the scope "drift".
MODEL_QUALITY_SCOPES = (MODEL_SCOPE, "drift")

Publish = Callable[[bytes, bytes], Awaitable[None]]


def hour_ttl_s(settings: Settings) -> int:
    """Hourly rollups must reach back over the seasonal lookback (plus a day of slack)."""
    return (settings.alert_seasonal_weeks * 7 + 1) * 24 * 3600


def sink_names(settings: Settings) -> list[str]:
    """The names of the sinks ``build_sinks`` makes, without making them: what a process
    that only queues announcements (the console) needs to reach every worker's sinks."""
    s = settings
    names = ["console", "kafka"]
    if s.slack_bot_token is not None or s.slack_webhook_url is not None:
        names.append("slack")
    if s.renotify_slack_webhook_url is not None:
        names.append("slack-renotify")
    if s.appinsights_connection_string is not None:
        names.append("appinsights")
    return names


def build_sinks(settings: Settings, publish_alert: Publish, redis: aioredis.Redis) -> list[AlertSink]:
    """Console and Kafka always; Slack and Application Insights when configured."""
    from alerting.appinsights import AppInsightsSink
    from alerting.slack import RenotifyWebhookSink, SlackBotSink, SlackWebhookSink

    s = settings
    options = kafka_options(s)

    async def published(alert: Alert) -> bool:
        return await on_topic(options, s.topic_alerts, alert)

    sinks: list[AlertSink] = [ConsoleSink(), KafkaSink(publish_alert, published)]
    if s.slack_bot_token is not None:
        sinks.append(
            SlackBotSink(
                s.slack_bot_token.get_secret_value(), s.slack_channel, redis,
                prefix=s.redis_prefix, ttl_s=s.outbox_retention_s, base_url=s.slack_api_url, timeout_s=s.outbox_send_timeout_s, console_url=s.console_url,
            )
        )
    elif s.slack_webhook_url is not None:
        sinks.append(SlackWebhookSink(s.slack_webhook_url.get_secret_value(), timeout_s=s.outbox_send_timeout_s, console_url=s.console_url))
    if s.renotify_slack_webhook_url is not None:
        sinks.append(RenotifyWebhookSink(s.renotify_slack_webhook_url.get_secret_value(), timeout_s=s.outbox_send_timeout_s, console_url=s.console_url))
    if s.appinsights_connection_string is not None:
        sinks.append(AppInsightsSink(s.appinsights_connection_string.get_secret_value(), timeout_s=s.outbox_send_timeout_s))
    return sinks


class AlertingRuntime:
    def __init__(
        self, settings: Settings, publish_alert: Publish, model_info: Callable[[], ModelInfo], *,
        on_announced: Callable[[Alert], None] | None = None,
    ):
        self.settings = settings
        self.publish_alert = publish_alert
        self.model_info = model_info
        self.on_announced = on_announced
        self.cfg = RuleConfig.from_settings(settings)

    @property
    def scopes(self) -> list[str]:
        """The global scope and one per watch term, as last read (``watch_terms``)."""
        return self.watch_terms.scopes

    @cached_property
    def watch_terms(self) -> FollowedTerms:
        store = WatchTerms(self.redis, prefix=self.settings.redis_prefix, default=self.settings.watch_terms)
        return FollowedTerms(store, on_change=self._terms_changed)

    def _terms_changed(self, matcher: ScopeMatcher) -> None:
        # Counting follows through the pipeline's matcher; evaluation and re-notification here.
        self.escalator.watch(matcher.scopes)
        self.renotifier.keys = self._renotify_keys()
        log.info("watch terms (version %d): %s", self.watch_terms.version, ", ".join(matcher.terms) or "none")

    @cached_property
    def redis(self) -> aioredis.Redis:
        return redis_client(self.settings)

    @cached_property
    def counters(self) -> Counters:
        s = self.settings
        return Counters(
            self.redis, prefix=s.redis_prefix, ttl_s=s.counter_ttl_s, hour_ttl_s=hour_ttl_s(s), examples_per_minute=s.alert_examples,
            dedup_window_s=s.dedup_window_s, keep_predictions=s.keep_predictions,
        )

    @cached_property
    def sinks(self) -> list[AlertSink]:
        sinks = build_sinks(self.settings, self.publish_alert, self.redis)
        log.info("alert sinks: %s", ", ".join(s.name for s in sinks))
        return sinks

    @cached_property
    def outbox(self) -> Outbox:
        return Outbox(self.redis, prefix=self.settings.redis_prefix, sinks=[s.name for s in self.sinks], cfg=OutboxConfig.from_settings(self.settings))

    @cached_property
    def incidents(self) -> IncidentStore:
        return IncidentStore(
            self.redis, prefix=self.settings.redis_prefix, ttl_s=self.settings.counter_ttl_s, outbox=self.outbox, on_announced=self.on_announced,
            silences=Silences(self.redis, prefix=self.settings.redis_prefix),
        )

    @cached_property
    def renotifier(self) -> Renotifier:
        history = IncidentHistory(self.redis, prefix=self.settings.redis_prefix)
        return Renotifier(self.incidents, history, self._renotify_keys(), every_min=self.settings.renotify_min)

    def _renotify_keys(self) -> list[tuple[Signal, str]]:
        keys = [(signal, scope) for scope in self.escalator.scopes for signal in WINDOW_SIGNALS]
        return keys + [(Signal.MODEL_QUALITY, scope) for scope in MODEL_QUALITY_SCOPES]

    @cached_property
    def escalator(self) -> Escalator:
        s = self.settings
        return Escalator(
            self.counters, self.incidents, self.cfg, self.scopes, self.model_info, content=AlertContent.from_settings(s), idle_s=s.alert_idle_s,
            cfg_for=self.scope_configs,
        )

    @cached_property
    def scope_configs(self) -> ScopeConfigs:
        def changed(chosen: dict[str, str]) -> None:
            log.info("sensitivity presets: %s", ", ".join(f"{scope}={preset}" for scope, preset in sorted(chosen.items())) or "all balanced")

        return ScopeConfigs(self.cfg, Presets(self.redis, prefix=self.settings.redis_prefix), on_change=changed)

    @cached_property
    def delivery(self) -> Delivery:
        return Delivery(self.outbox, self.sinks, send_timeout_s=self.settings.outbox_send_timeout_s)

    @cached_property
    def model_quality(self) -> ModelQualityMonitor:
        store = FeedbackStore(self.redis, prefix=self.settings.redis_prefix, ttl_s=self.settings.feedback_ttl_s)
        return ModelQualityMonitor(store, self.incidents, self.cfg, self.model_info)

    @cached_property
    def feedback(self) -> FeedbackProcessor:
        return FeedbackProcessor(self.counters, self.model_quality.store, self.model_quality, self.model_info)

    def attach_feedback_telemetry(self) -> None:
        """Feedback warnings also go to Application Insights when it is configured."""
        s = self.settings
        if s.appinsights_connection_string is None:
            return
        from alerting.appinsights import feedback_handler

        feedback_log.addHandler(feedback_handler(s.appinsights_connection_string.get_secret_value(), storage_dir=s.home / "appinsights"))

    async def tick(self) -> None:
        """The timer: evaluate windows at the event clock, the model-quality window, and
        re-notify the critical incidents nobody took."""
        await self.scope_configs.refresh()
        await self.escalator.tick()
        await self.model_quality.check(int(time.time() * 1000))
        await self.renotifier.check()
