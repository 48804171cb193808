"""The Faust application: where a tweet enters (topic ``tweets.raw``), which agent takes
it (``stream.agents``), and what is wired to what. ``badbuzz worker`` runs this."""
from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Mapping
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_kafka

from alerting.runtime import AlertingRuntime
from alerting.watch_terms import POLL_S as WATCH_TERMS_POLL_S
from config.connections import faust_credentials
from config.settings import Settings
from models.scorer import Scorer
from stream import agents, assignment, lifecycle, web
from stream.metrics import Metrics
from stream.model_watch import ActiveModel
from stream.pipeline import Pipeline, PipelineConfig
from stream.retry import UNEXPECTED, Abandoned, Outage, error_class, until_done

log = logging.getLogger(__name__)

# How long a stopping worker may take before it ends itself: below the orchestrator's
# grace period (docker compose and ``badbuzz.processes.stop_worker``: 30 s).
SHUTDOWN_GRACE_S = 25.0


class IdempotentProducer(faust_kafka.Producer):
    """Faust's Kafka producer with idempotence on: a send retried after a lost answer is
    written once, not twice. Faust 0.15.3 has no setting for it (it turns it on only with
    ``processing_guarantee="exactly_once"``, whose transactions the worker does not use), so
    this adds it where Faust adds its own."""

    def _settings_extra(self) -> Mapping[str, Any]:
        return {**super()._settings_extra(), "enable_idempotence": True}


class IdempotentKafka(faust_kafka.Transport):
    Producer = IdempotentProducer


def create_app(settings: Settings, scorer: Scorer) -> faust.App:
    datadir = settings.home / "faust" / settings.app_id
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{server.strip()}" for server in settings.kafka_bootstrap.split(",")],
        broker_credentials=faust_credentials(settings),
        store="memory://",
        datadir=str(datadir),
        # Faust listens on ``web_bind`` (its default: every interface); ``web_host`` only
        # names the host in the URLs it builds.
        web_host=settings.web_host,
        web_bind=settings.web_host,
        web_port=settings.web_port,
        topic_partitions=settings.topic_partitions,
        # Faust's own leader topic; its min.insync.replicas comes from config.topics.ensure_worker_topics,
        # which creates it first (Faust has no setting for topic configs).
        topic_replication_factor=settings.topic_replication_factor,
        consumer_group_instance_id=settings.group_instance_id or None,
        broker_session_timeout=settings.kafka_session_timeout_s,
        broker_heartbeat_interval=settings.kafka_heartbeat_interval_s,
        consumer_auto_offset_reset="earliest",
        key_serializer="raw",
        value_serializer="raw",
        # An alert or dead letter is only "sent" once every in-sync replica has it.
        producer_acks=-1,
        # Dead letters carry the original bytes: allow anything the broker accepted
        # (Faust's own default cap is 1,000,000 bytes, below Kafka's 1 MiB).
        producer_max_request_size=settings.kafka_max_message_bytes,
    )
    app.transport = IdempotentKafka(app.conf.broker_consumer, app)
    raw = app.topic(settings.topic_raw, key_type=bytes, value_type=bytes)
    dlq = app.topic(settings.topic_dlq, key_type=bytes, value_type=bytes)
    alerts = app.topic(settings.topic_alerts, key_type=bytes, value_type=bytes)
    metrics = Metrics()
    metrics.set_model(scorer.info)
    # Swapped between batches when the registry moves (stream.model_watch); everything
    # that names the model asks it.
    active = ActiveModel(scorer)

    async def publish_alert(key: bytes, value: bytes) -> None:
        await (await alerts.send(key=key, value=value))

    alerting = AlertingRuntime(settings, publish_alert, lambda: active.info, on_announced=metrics.record_alert)
    observers = lifecycle.register(app, settings, active, metrics, alerting)

    def build_pipeline() -> Pipeline:
        return Pipeline(
            PipelineConfig.from_settings(settings), active, alerting.counters, alerting.escalator, agents.dead_letter_to(dlq, metrics), observers,
            matcher=lambda: alerting.watch_terms.matcher,
        )

    agents.register(app, settings, raw, build_pipeline, metrics, load_watch_terms=alerting.watch_terms.refresh)
    ownership = assignment.ScopeOwnership(settings.topic_raw)
    alerting.escalator.owns = ownership.owns
    assignment.register(app, settings, alerting.counters, ownership)
    register_alerting(app, settings, alerting, metrics)
    stop_within(app, SHUTDOWN_GRACE_S)
    web.register(app, settings, metrics, alerting, lambda: active.info)
    return app


def register_alerting(app: faust.App, settings: Settings, alerting: AlertingRuntime, metrics: Metrics) -> None:
    """Alert delivery from the outbox, the evaluation timer, and the feedback agent."""
    feedback = app.topic(settings.topic_feedback, key_type=bytes, value_type=bytes)
    timer_outage = Outage(log, "timer evaluation")

    @app.task
    async def deliver_alerts() -> None:
        alerting.attach_feedback_telemetry()
        await alerting.delivery.run()

    @app.task
    async def load_presets() -> None:
        # The batches decide from the start; the timer would load the presets only at its first tick.
        try:
            await alerting.scope_configs.refresh()
        except Exception as exc:
            log.warning("sensitivity presets not read at start (%s): the timer reads them", error_class(exc))

    terms_outage = Outage(log, "watch terms")

    @app.timer(WATCH_TERMS_POLL_S)
    async def follow_watch_terms() -> None:
        # One read of the version most of the time; the terms themselves only when it moved.
        try:
            await alerting.watch_terms.refresh()
        except Exception as exc:
            error = error_class(exc)
            metrics.handler_errors.labels("timer", error).inc()
            if error == UNEXPECTED:
                log.exception("watch terms not refreshed; trying again at the next tick")
            else:
                terms_outage.failed(exc)
        else:
            terms_outage.recovered()

    @app.timer(settings.alert_eval_interval_s)
    async def evaluate_on_timer() -> None:
        # A quiet stream has no batches to evaluate after: this resolves its incidents.
        # Whatever fails, the next tick evaluates again.
        try:
            await alerting.tick()
        except Exception as exc:
            error = error_class(exc)
            metrics.handler_errors.labels("timer", error).inc()
            if error == UNEXPECTED:
                log.exception("timer evaluation failed; evaluating again at the next tick")
            else:
                timer_outage.failed(exc)
        else:
            timer_outage.recovered()

    @app.agent(feedback, name="feedback")
    async def take_feedback(stream) -> None:
        """Feedback is retried through transient failures like a batch, but a bug only
        costs the one message: it is logged, counted and skipped."""
        stopped = agents.until_stopped(app)
        outage = Outage(log, "feedback")
        halted = False

        def retried(error: str) -> None:
            metrics.handler_errors.labels("feedback", error).inc()

        async for event in stream.events():
            if halted or stopped.done():
                agents.hold([event])
                continue
            value = event.message.value
            try:
                await until_done(
                    lambda value=value: alerting.feedback.handle(value), stopped=stopped, outage=outage, on_retry=retried, stop_wait_s=agents.STOP_WAIT_S
                )
            except Abandoned:
                agents.hold([event])
                halted = True
            except asyncio.CancelledError:
                agents.hold([event])
                raise
            except Exception:
                metrics.handler_errors.labels("feedback", UNEXPECTED).inc()
                log.exception("feedback message %s[%d]@%d skipped", event.message.topic, event.message.partition, event.message.offset)


def stop_within(app: faust.App, grace_s: float) -> None:
    """Once the app begins to stop, give it ``grace_s`` to do so cleanly, then end the
    process: a stop wedged on a hung connection must not outlast the orchestrator's
    grace period (it would kill the worker anyway, without a word). Nothing is lost:
    what was not committed is read again by whoever takes the partitions."""

    @app.task
    async def hard_stop_after_grace() -> None:
        await app.wait()

        def exit_now() -> None:
            log.critical("the worker did not stop within %.0fs; exiting now", grace_s)
            logging.shutdown()
            os._exit(1)

        timer = threading.Timer(grace_s, exit_now)
        timer.daemon = True
        timer.start()
