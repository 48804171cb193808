"""Runs the rule for every scope after each batch and turns its decisions into incidents
and alerts."""
from __future__ import annotations

import logging
from typing import Callable, Sequence

from alerting.alert import Alert, iso
from alerting.incidents import Incident, IncidentStore
from alerting.rules import Action, Decision, RuleConfig, evaluate
from alerting.sinks import Dispatcher
from models.scorer import ModelInfo
from stream.counters import Counters
from stream.windows import WindowStats, aggregate, window_minutes

log = logging.getLogger(__name__)

TOP_TERMS = 8


class Escalator:
    def __init__(
        self,
        counters: Counters,
        incidents: IncidentStore,
        dispatcher: Dispatcher,
        cfg: RuleConfig,
        scopes: Sequence[str],
        model_info: Callable[[], ModelInfo],
    ):
        self.counters = counters
        self.incidents = incidents
        self.dispatcher = dispatcher
        self.cfg = cfg
        self.scopes = list(scopes)
        self.model_info = model_info

    async def evaluate(self, end_minute: int) -> list[Alert]:
        alerts = []
        for scope in self.scopes:
            alert = await self._evaluate_scope(scope, end_minute)
            if alert is not None:
                alerts.append(alert)
                await self.dispatcher.dispatch(alert)
        return alerts

    async def _evaluate_scope(self, scope: str, end_minute: int) -> Alert | None:
        span = window_minutes(end_minute, self.cfg.window_min + self.cfg.baseline_min)
        buckets = await self.counters.buckets(scope, span)
        window = aggregate(buckets, window_minutes(end_minute, self.cfg.window_min))
        baseline = aggregate(buckets, window_minutes(end_minute, self.cfg.baseline_min, offset_min=self.cfg.window_min))
        incident = await self.incidents.get(scope)
        decision = evaluate(window, baseline, incident.state if incident else None, self.cfg)
        if decision is None:
            return None
        changed = await self._apply(scope, decision, incident, window)
        if changed is None:
            return None  # another worker got there first and announces it
        return await self._alert(changed, decision, window)

    async def _apply(self, scope: str, decision: Decision, incident: Incident | None, window: WindowStats) -> Incident | None:
        if decision.action is Action.OPEN:
            return await self.incidents.open(scope, decision, window.end_ms)
        assert incident is not None
        if decision.action is Action.ESCALATE:
            return await self.incidents.escalate(incident, decision.severity)
        return incident if await self.incidents.resolve(incident) else None

    async def _alert(self, incident: Incident, decision: Decision, window: WindowStats) -> Alert:
        minutes = range(window.start_minute, window.end_minute + 1)
        terms = await self.counters.top_terms(incident.scope, minutes, TOP_TERMS)
        info = self.model_info()
        alert = Alert(
            incident_id=incident.id,
            action=decision.action.value,
            severity=decision.severity.value,
            scope=incident.scope,
            window_start=iso(window.start_ms),
            window_end=iso(window.end_ms),
            window_minutes=self.cfg.window_min,
            rate=round(window.rate, 4),
            baseline=round(decision.baseline, 4),
            volume=window.total,
            negatives=window.negative,
            top_terms=[term for term, _ in terms],
            model=info.display,
            model_version=info.version or info.uri,
        )
        log.info("incident %s %s (%s): rate %.3f baseline %.3f volume %d", incident.id, alert.action, alert.severity, alert.rate, alert.baseline, alert.volume)
        return alert
