"""Azure Application Insights: alerts as a custom event plus a warning trace, both with
the alert's numbers as custom dimensions, and its rate and volume as metrics.

opencensus' handlers and exporters queue telemetry for a background thread and never
say whether it arrived, which the outbox needs to know. So the sink builds envelopes
with opencensus' own protocol classes (``Envelope``, ``Event``, ``Message``,
``MetricData``) and posts them with its own transport (``TransportMixin._transmit``: the
connection-string endpoint, redirects, AAD credentials, retryable status codes), called
synchronously in a thread; its status tells the outbox whether to retry. opencensus'
local file storage is off: the Redis outbox is the durable store.

opencensus is retired upstream; ``azure-monitor-opentelemetry``'s exporters return an
``ExportResult`` per batch, so a sink built on them fits the same ``send`` interface.

Feedback warnings (``alerting.feedback``) go through opencensus' ``AzureLogHandler`` on
the ``badbuzz.feedback`` logger instead: they are log records, batched and retried from
opencensus' local storage, and losing one is not an outage."""
from __future__ import annotations

import asyncio
import logging
import os
from datetime import datetime
from pathlib import Path

from opencensus.ext.azure.common import Options, utils
from opencensus.ext.azure.common.processor import ProcessorMixin
from opencensus.ext.azure.common.protocol import Data, DataPoint, Envelope, Event, Message, MetricData
from opencensus.ext.azure.common.transport import TransportMixin, TransportStatusCode

from alerting.alert import Alert

EVENT_NAME = "badbuzz.alert"
# Application Insights trace severity levels.
_INFORMATION, _WARNING, _ERROR = 1, 2, 3


class AppInsightsError(RuntimeError):
    pass


def _no_statsbeat() -> None:
    # opencensus reports its own usage to Microsoft unless told not to; that is nobody's
    # business and, offline, only retries forever.
    os.environ.setdefault("APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL", "true")


class Transport(TransportMixin, ProcessorMixin):
    """opencensus' ingestion transport, called directly so its result is known."""

    def __init__(self, connection_string: str, *, timeout_s: float = 10.0):
        _no_statsbeat()
        self.options = Options(connection_string=connection_string, enable_local_storage=False, timeout=timeout_s)
        utils.validate_instrumentation_key(self.options.instrumentation_key)
        # Portal connection strings end the endpoint with "/"; opencensus appends
        # "/v2.1/track" to it as it is.
        self.options.endpoint = self.options.endpoint.rstrip("/")
        self.storage = None
        self._telemetry_processors = []
        self._consecutive_redirects = 0

    @property
    def instrumentation_key(self) -> str:
        return self.options.instrumentation_key

    def post(self, envelopes: list[Envelope]) -> None:
        status = self._transmit(self.apply_telemetry_processors(envelopes))
        if status != TransportStatusCode.SUCCESS:
            kind = "retryable" if status == TransportStatusCode.RETRY else "rejected"
            raise AppInsightsError(f"Application Insights ingestion at {self.options.endpoint}: {kind} (see the log above)")


def dimensions(alert: Alert) -> dict[str, str]:
    """Custom dimensions are strings; lists are comma-joined."""
    out = {}
    for key, value in alert.to_dict().items():
        if key in ("drivers", "top_terms"):
            continue
        out[key] = ",".join(value) if isinstance(value, list) else "" if value is None else str(value)
    out["drivers"] = ",".join(alert.top_terms)
    return out


def measurements(alert: Alert) -> dict[str, float]:
    if alert.signal == "model_quality":
        return {"feedback_wrong": float(alert.feedback_wrong), "feedback_threshold": float(alert.feedback_threshold)}
    values = {"rate": alert.rate, "short_rate": alert.short_rate, "volume": float(alert.volume), "negatives": float(alert.negatives), "p_value": alert.p_value}
    if alert.baseline is not None:
        values["baseline"] = alert.baseline
    if alert.expected_volume is not None:
        values["expected_volume"] = alert.expected_volume
    return values


def envelopes(alert: Alert, instrumentation_key: str) -> list[Envelope]:
    when = utils.timestamp_to_iso_str(datetime.fromisoformat(alert.created_at.replace("Z", "+00:00")).timestamp())
    dims = dimensions(alert)

    def envelope(name: str, base_type: str, data) -> Envelope:
        env = Envelope(iKey=instrumentation_key, tags=dict(utils.azure_monitor_context), time=when)
        # One operation per incident: App Insights' transaction view then shows its story.
        env.tags["ai.operation.id"] = alert.incident_id
        env.name = name
        env.data = Data(baseData=data, baseType=base_type)
        return env

    level = _INFORMATION if alert.action == "resolved" or (alert.is_response and alert.action != "renotified") else (
        _ERROR if alert.severity == "critical" else _WARNING
    )
    told = alert.response_line if alert.is_response else alert.numbers
    out = [
        envelope("Microsoft.ApplicationInsights.Event", "EventData", Event(name=EVENT_NAME, properties=dims, measurements=measurements(alert))),
        envelope(
            "Microsoft.ApplicationInsights.Message", "MessageData", Message(message=f"{alert.headline}: {told}", severityLevel=level, properties=dims)
        ),
    ]
    metric_dims = {"signal": alert.signal, "scope": alert.scope, "incident_id": alert.incident_id, "action": alert.action}
    metrics = (
        [("badbuzz.model.wrong_feedbacks", float(alert.feedback_wrong))]
        if alert.signal == "model_quality"
        else [("badbuzz.negative_rate", alert.rate), ("badbuzz.volume", float(alert.volume))]
    )
    for name, value in metrics:
        point = DataPoint(ns=name, name=name, value=value)
        out.append(envelope("Microsoft.ApplicationInsights.Metric", "MetricData", MetricData(metrics=[point], properties=metric_dims)))
    return out


class AppInsightsSink:
    name = "appinsights"

    def __init__(self, connection_string: str, *, timeout_s: float = 10.0):
        self.transport = Transport(connection_string, timeout_s=timeout_s)

    async def send(self, alert: Alert) -> None:
        await asyncio.to_thread(self.transport.post, envelopes(alert, self.transport.instrumentation_key))


def feedback_handler(connection_string: str, *, storage_dir: Path, export_interval_s: float = 15.0) -> logging.Handler:
    """opencensus' log handler for feedback warnings (traces), with its local retry store."""
    from opencensus.ext.azure.log_exporter import AzureLogHandler

    _no_statsbeat()
    storage_dir.mkdir(parents=True, exist_ok=True)
    handler = AzureLogHandler(connection_string=connection_string, storage_path=str(storage_dir), export_interval=export_interval_s)
    handler.setLevel(logging.WARNING)
    return handler
