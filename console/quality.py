"""The alert-quality figures (``alerting.quality``) as Prometheus metrics on the
console's ``/metrics``: computed from the shared incident history at each scrape, so every
console replica reports the same values."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, SummaryMetricFamily

from alerting.quality import AlertQuality


class _Figures:
    def __init__(self, quality: AlertQuality):
        self.quality = quality

    def collect(self):
        q = self.quality
        yield SummaryMetricFamily(
            "badbuzz_incident_ack_seconds", "Seconds from an incident's opening to its first acknowledgement, over the incident history",
            count_value=len(q.ack_seconds), sum_value=sum(q.ack_seconds),
        )
        ratio = GaugeMetricFamily("badbuzz_false_alarm_ratio", "Share of the incidents marked a false alarm, per signal and scope", labels=["signal", "scope"])
        for s in q.scopes:
            ratio.add_metric([s.signal, s.scope], s.false_alarm_ratio)
        yield ratio
        yield GaugeMetricFamily("badbuzz_incidents_per_week", "Incidents opened per week over the incident history", value=q.incidents_per_week)
        yield GaugeMetricFamily("badbuzz_incidents", "Incidents opened over the incident history", value=q.incidents)
        yield GaugeMetricFamily(
            "badbuzz_silenced_notifications", "Announcements a silence kept from every sink, over the incident history", value=q.silenced,
        )


def exposition(quality: AlertQuality) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Figures(quality))
    return generate_latest(registry)
